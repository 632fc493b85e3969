"""The README's shell blocks, run word for word and in order, as a new user would run them.

Each ```bash block runs in a fresh ``bash -e -o pipefail`` (a new shell, as the README's "in
another shell" says) in a fresh copy of the repository (the tracked files only: no state, no
virtualenv), with this test's virtualenv's tools first on PATH, a clean HOME, and none of the
caller's HSM_/KMS_/AWS_ variables. Every block must exit 0; some must also print what the README
says they print. A marker in the line before a block changes how it is run:

    <!-- readme-test: skip REASON -->          never run here (REASON says what covers it instead)
    <!-- readme-test: run COMMAND -- REASON --> run COMMAND instead (e.g. `up --detach` for a foreground `up`)
    <!-- readme-test: long REASON -->          only with README_TEST_LONG=1
    <!-- readme-test: docker [long] -->       only with README_TEST_DOCKER=1 and a reachable Docker engine

A block skipped for any reason is printed with the reason (``pytest -rs`` lists them).
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK_TIMEOUT_S = 300

# What a block must print besides exiting 0, by the heading it is under (first block there).
EXPECT = {
    "Using the local cluster": ["CONNECTED", "hello", "kmsuser"],
    "boto3, the AWS CLI and the AWS Encryption SDK": ["b'hello'", "KeyId"],
    "The HSM node": ["Key Handle: 1", "secret"],
    "A three-node cluster, backups and restore": ["on 3 nodes", "Members agree.", "created from backup"],
    # (that a loaded machine holds 100 req/s is a timing target, not what the block shows: it counts
    # late and dropped starts; a run beside two CPU hogs dropped 4)
    "Load and chaos": ["open loop: target 100.0 req/s", "dropped starts", "report: load.json"],
}


@dataclass
class Block:
    line: int          # where the block starts in README.md
    heading: str       # the nearest heading above it
    code: str
    marker: str        # the readme-test marker's text, "" when none

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.heading})"


def blocks(text: str) -> list[Block]:
    found, heading, marker = [], "", ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = re.fullmatch(r"<!-- readme-test: (.*?) -->", line.strip())
        if m:
            marker = m.group(1)
        elif line.startswith("```"):
            lang, start = line[3:].strip(), i + 1
            i += 1
            while not lines[i].startswith("```"):
                i += 1
            if lang == "bash":
                found.append(Block(start, heading, "\n".join(lines[start:i]) + "\n", marker))
            marker = ""
        elif line.strip():
            marker = ""   # a marker applies to the block right below it
        i += 1
    return found


def test_the_readme_markers_are_understood() -> None:
    all_blocks = blocks(README.read_text())
    assert len(all_blocks) >= 10
    for b in all_blocks:
        kind = b.marker.split(" ", 1)[0]
        assert kind in ("", "skip", "run", "long", "docker"), f"{b.name}: unknown readme-test marker {b.marker!r}"
        if kind in ("skip", "long"):
            assert len(b.marker.split()) > 1, f"{b.name}: say why ({b.marker!r})"
    assert all("<" not in re.sub(r"<<'?\w+'?|<\(|< \$|< \w|\d<", "", b.code) for b in all_blocks
               if not b.marker.startswith("skip")), "a block to run holds a <placeholder>"


def copy_repository(dest: Path) -> None:
    """The tracked (and new, not ignored) files, as a fresh clone has them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", ".venv", ".kms-cluster", "__pycache__"))
        return
    for rel in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def not_ignored(repo: Path, before: set[str]) -> tuple[list[str], list[str]]:
    """Files the blocks made in the repository that .gitignore / .dockerignore let through (a CA
    key or a master key must not be committed, nor reach an image's build context)."""
    made = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")
                  if p.is_file() and p.relative_to(repo).as_posix() not in before and "__pycache__" not in p.parts)
    git = subprocess.run(["git", "ls-files", "-o", "--exclude-standard"], cwd=repo, capture_output=True, text=True)
    for_git = [f for f in git.stdout.split() if f in made]
    patterns = [line.strip().lstrip("/") for line in (repo / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def docker_ignores(rel: str) -> bool:   # a pattern matching the path or one of its parent directories
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatchcase(prefix, pat.removeprefix("**/")) or fnmatch.fnmatchcase(parts[-1], pat)
                   for pat in patterns for prefix in prefixes)
    return for_git, [f for f in made if not docker_ignores(f)]


def docker_available() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


def ports_taken(code: str) -> list[str]:
    taken = []
    for port in sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d{4,5})\b", code)}):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"127.0.0.1:{port}")
    return taken


def why_not(b: Block) -> str | None:
    kind, _, reason = b.marker.partition(" ")
    if kind == "skip":
        return reason
    if kind == "docker":
        if os.environ.get("README_TEST_DOCKER") != "1":
            return "a Docker block: set README_TEST_DOCKER=1 (and have an engine) to run it"
        if "long" in reason.split() and os.environ.get("README_TEST_LONG") != "1":
            return "a long Docker block: set README_TEST_LONG=1 too"
        if not docker_available():
            return "no reachable Docker engine (docker info failed)"
    if kind == "long" and os.environ.get("README_TEST_LONG") != "1":
        return f"long ({reason}): set README_TEST_LONG=1 to run it"
    taken = ports_taken(b.code)
    if taken:
        return f"its fixed ports are taken by another process here: {', '.join(taken)}"
    return None


def shell_env(home: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HSM_", "KMS_", "AWS_", "PYTEST", "COMPOSE_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               TMPDIR=str(tmp), VIRTUAL_ENV=str(Path(sys.executable).parent.parent))
    return env


def run_block(code: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """``bash -e -o pipefail``, in its own process group: whatever it left running in the
    background (a node started with ``&`` in a block that failed) is ended with it."""
    started = time.monotonic()
    proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", code], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out += f"\n[readme-test: killed after {BLOCK_TIMEOUT_S} s]".encode()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return proc.returncode, out.decode(errors="replace"), time.monotonic() - started


def test_every_readme_block_works_word_for_word(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo, home, tmp = tmp_path / "kms-cloudhsm-cluster", tmp_path / "home", tmp_path / "tmp"
    for d in (repo, home, tmp):
        d.mkdir()
    copy_repository(repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)   # for .gitignore's verdict at the end
    before = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    env = shell_env(home, tmp)
    ran, skipped, failures = [], [], []
    seen_headings: set[str] = set()
    try:
        for b in blocks((repo / "README.md").read_text()):
            reason = why_not(b)
            if reason is not None:
                skipped.append(f"{b.name}: {reason}")
                continue
            code = b.code
            if b.marker.startswith("run "):
                code = b.marker[4:].split(" -- ", 1)[0] + "\n"
            rc, out, took = run_block(code, repo, env)
            ran.append(f"{b.name}: exit {rc} in {took:.1f} s")
            expected = EXPECT.get(b.heading, []) if b.heading not in seen_headings else []
            seen_headings.add(b.heading)
            missing = [text for text in expected if text not in out]
            if rc != 0 or missing:
                failures.append(f"{b.name} exited {rc}" + (f", without {missing}" if missing else "")
                                + f":\n--- block\n{code}--- output (last 4000 characters)\n{out[-4000:]}")
                break   # the blocks after it build on it
    finally:
        subprocess.run([sys.executable, "-m", "cluster_tools.launcher", "down"], cwd=repo, env=env,
                       capture_output=True, timeout=120)
        with capsys.disabled():
            print("\nREADME blocks run:\n  " + "\n  ".join(ran))
            if skipped:
                print("README blocks not run here:\n  " + "\n  ".join(skipped))
    assert not failures, "\n\n".join(failures)
    assert len(ran) >= 5, ran
    for_git, for_docker = not_ignored(repo, before)
    assert not for_git, f"the README's commands make files .gitignore does not cover: {for_git}"
    assert not for_docker, f"the README's commands make files .dockerignore does not cover: {for_docker}"
