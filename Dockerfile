# One image for every service of compose.yaml: hsm-node, kms-frontend and the
# one-shot init (kms-cluster provision). Built from the official Python base.

# The project's files, gathered in a stage of their own so the image takes them in one layer
# (each layer is a full copy of the image on a `vfs` storage driver, as on some CI machines).
# Only these paths reach the image.
FROM scratch AS code
COPY pyproject.toml README.md /app/
COPY protos /app/protos
COPY hsm_node /app/hsm_node
COPY plumbing /app/plumbing
COPY backup_store /app/backup_store
COPY kms_frontend /app/kms_frontend
COPY cluster_tools /app/cluster_tools

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Non-root; the volume mount points belong to it so named volumes start owned by it.
# (A base image whose root directory is 0700 locks this user out of everything: see
# deploy/fix-base-image.sh, which the compose test runs before building.)
RUN useradd --create-home --uid 10001 kms \
 && mkdir -p /data /backups /secrets /state /share/hsm /share/frontend /share/supervisor /share/init \
 && chown kms:kms /data /backups /secrets /state /share/hsm /share/frontend /share/supervisor /share/init

WORKDIR /app
# The dependencies first, in a layer that only a change to pyproject.toml rebuilds: after an edit
# to the code, `docker compose build` reinstalls only the project.
COPY pyproject.toml deploy/image_requirements.py /tmp/deps/
RUN python /tmp/deps/image_requirements.py /tmp/deps/pyproject.toml > /tmp/deps/requirements.txt \
 && pip install -r /tmp/deps/requirements.txt "setuptools>=68" wheel && rm -rf /tmp/deps /root/.cache
COPY --from=code /app /app
# no build isolation: the build backend is in the layer above, nothing to fetch for a code change
RUN pip install --no-deps --no-build-isolation . && pip check && rm -rf /root/.cache build *.egg-info

USER kms
CMD ["kms-cluster", "--help"]
