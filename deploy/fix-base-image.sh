#!/usr/bin/env bash
# The locally built python:3.11-slim (shared/tools/docker-engine.sh imports a
# debootstrap tree from a mktemp directory) can have a root directory of mode 0700,
# which locks every non-root user out of the whole filesystem ("stat /bin/sh:
# permission denied"). A RUN chmod in a Dockerfile does not survive the layer diff
# of "/", so re-import the image once with its root made 0755. No-op otherwise.
set -euo pipefail
image=${1:-python:3.11-slim}
mode=$(docker run --rm --user root --entrypoint /bin/sh "$image" -c 'stat -c %a /')
if [[ "$mode" == 755 ]]; then
  echo "$image: root directory mode 755, nothing to do"
  exit 0
fi
name="fix-base-$$"
docker run --name "$name" --user root --entrypoint /bin/sh "$image" -c 'chmod 755 /' >/dev/null
env=$(docker image inspect "$image" --format '{{range .Config.Env}}{{println .}}{{end}}')
changes=()
while IFS= read -r line; do [[ -n "$line" ]] && changes+=(-c "ENV $line"); done <<< "$env"
docker export "$name" | docker import "${changes[@]}" -c 'CMD ["python3"]' - "$image" >/dev/null
docker rm "$name" >/dev/null
echo "$image: root directory was mode $mode, re-imported with 755"
