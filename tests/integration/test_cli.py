"""hsm-mgmt end to end: the CLI as a subprocess against real hsm-node processes."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest

from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import CO_PASSWORD, CU_PASSWORD, Lab, co, free_port, wait_until
from tests.harness import CliResult as Result

SECRETS = (CO_PASSWORD, CU_PASSWORD, "alicePassword1", "wrongPassword9")


class Mgmt:
    """Runs ``python -m hsm_node.mgmt`` with a controlled environment and checks
    what every run printed: never a traceback, never a password."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        cwd.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("HSM_")}
        self.env = {**base, **env}

    async def __call__(self, *args: str, stdin: bytes | None = None, **env: str) -> Result:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hsm_node.mgmt", *args, cwd=self.cwd, env={**self.env, **env},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
        r = Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
        assert "Traceback" not in r.err and "Traceback" not in r.out, r
        for secret in SECRETS:
            assert secret not in r.out and secret not in r.err, f"a password was printed\n{r}"
        return r

    async def ok(self, *args: str, **kw) -> Result:
        r = await self(*args, **kw)
        assert r.rc == 0, r
        return r


def failed(r: Result, code: str, rc: int = 1) -> None:
    assert r.rc == rc, r
    assert r.err.startswith(f"hsm-mgmt: {code}: "), r
    assert r.out == "", r


async def active_node(lab: Lab, tmp_path: Path, **env: str):
    """An initialised and activated node (via the harness) and a CLI pointed at it."""
    node = await lab.start_node()
    await lab.init_active(node)
    mgmt = Mgmt(tmp_path / "work", HSM_ENDPOINTS=node.endpoint, HSM_TRUST_ANCHOR=str(lab.anchor.cert_path),
                HSM_CO_PASSWORD=CO_PASSWORD, **env)
    await mgmt.ok("createUser", "CU", "kmsuser", CU_PASSWORD)
    return node, mgmt


def user_id(listing: str, name: str) -> int:
    m = re.search(rf"^\s+(\d+)\s+CU\s+{name}\s", listing, re.M)
    assert m, listing
    return int(m.group(1))


async def test_readme_walkthrough(lab: Lab, tmp_path: Path) -> None:
    node = await lab.start_node()
    mgmt = Mgmt(tmp_path / "work", HSM_ENDPOINTS=node.endpoint)

    # A fresh node can be looked at without a trust anchor (trust on first use).
    r = await mgmt.ok("status")
    assert "UNINITIALIZED" in r.out and "trust on first use" in r.out

    r = await mgmt.ok("initialize")
    anchor = (mgmt.cwd / "ca" / "customerCA.crt").resolve()
    assert anchor.exists() and (mgmt.cwd / "ca" / "customerCA.key").exists()
    cluster_id = re.search(r"cluster (cluster-[2-7a-z]{11})", r.out).group(1)
    assert f"Trust anchor: {anchor}" in r.out and f"export HSM_TRUST_ANCHOR={anchor}" in r.out
    mgmt.env["HSM_TRUST_ANCHOR"] = str(anchor)

    r = await mgmt.ok("activate", CO_PASSWORD)
    assert f"cluster {cluster_id} is ACTIVE" in r.out
    r = await mgmt.ok("status")
    assert "ACTIVE" in r.out and "verified with the trust anchor" in r.out

    r = await mgmt.ok("--password", CO_PASSWORD, "createUser", "CU", "kmsuser", CU_PASSWORD)
    assert r.out.splitlines()[:2] == ["Creating User kmsuser(CU) on 1 node",
                                      f"createUser success on server 0({node.endpoint})"]
    mgmt.env.update(HSM_CO_PASSWORD=CO_PASSWORD, HSM_CU_PASSWORD=CU_PASSWORD)
    await mgmt.ok("createUser", "CU", "alice", "alicePassword1")

    r = await mgmt.ok("listUsers")
    assert f"Users on server 0({node.endpoint}):" in r.out and "Number of users found:3" in r.out
    assert re.search(r"User Id\s+User Type\s+User Name\s+MofnPubKey\s+LoginFailureCnt\s+2FA", r.out)
    assert re.search(r"^\s+1\s+CO\s+admin\s+NO\s+0\s+NO", r.out, re.M), r.out
    kmsuser, alice = user_id(r.out, "kmsuser"), user_id(r.out, "alice")

    r = await mgmt.ok("genSymKey", "-t", "31", "-s", "32", "-l", "walkthrough")
    assert "Cfm3GenerateSymmetricKey returned: 0x00 : HSM Return: SUCCESS" in r.out
    handle = re.search(r"Key Handle: (\d+)", r.out).group(1)
    assert f"Key {handle} stored on 1 node" in r.out

    plain = os.urandom(3000) + b"\x00end"
    (mgmt.cwd / "plain.bin").write_bytes(plain)
    await mgmt.ok("encrypt", "-k", handle, "--in", "plain.bin", "--out", "sealed.json", "--aad", "ctx")
    sealed = json.loads((mgmt.cwd / "sealed.json").read_text())
    assert sealed["key_handle"] == int(handle) and set(sealed) >= {"iv", "ciphertext"}
    await mgmt.ok("decrypt", "--in", "sealed.json", "--aad", "ctx", "--out", "back.bin")
    assert (mgmt.cwd / "back.bin").read_bytes() == plain
    # stdin/stdout work too, and the AAD is checked
    r = await mgmt.ok("encrypt", "-k", handle, "--in", "-", stdin=b"hello from stdin")
    r = await mgmt.ok("decrypt", "--in", "-", stdin=r.out.encode())
    assert r.out == "hello from stdin"
    failed(await mgmt("decrypt", "--in", "sealed.json"), "INVALID_ARGUMENT")

    r = await mgmt.ok("getKeyInfo", "-k", handle)
    assert f"Key Info on server 0({node.endpoint}):" in r.out and "Token/Flash Key," in r.out
    assert f"Owned by user {kmsuser} (kmsuser)" in r.out and "shared to following" not in r.out
    assert "Label: walkthrough" in r.out and "AES-256" in r.out

    # alice may not use it until the owner shares it
    as_alice = ("--username", "alice", "--password", "alicePassword1")
    failed(await mgmt(*as_alice, "decrypt", "--in", "sealed.json", "--aad", "ctx"), "PERMISSION_DENIED")
    r = await mgmt.ok("shareKey", "-k", handle, "-u", str(alice))
    assert r.out.splitlines()[0] == f"Sharing key {handle} with user(s) {alice} on 1 node"
    r = await mgmt.ok("getKeyInfo", "-k", handle)
    assert "also, shared to following 1 user(s):" in r.out and f"\t\t {alice}" in r.out
    await mgmt.ok(*as_alice, "decrypt", "--in", "sealed.json", "--aad", "ctx", "--out", "alice.bin")
    assert (mgmt.cwd / "alice.bin").read_bytes() == plain
    failed(await mgmt(*as_alice, "deleteKey", "-k", handle), "PERMISSION_DENIED")  # only the owner deletes

    r = await mgmt.ok("findAllKeys", str(kmsuser), "1")
    assert f"{handle}(o)" in r.out and "Key Hash:" in r.out
    r = await mgmt.ok("findAllKeys", str(alice), "0")
    assert f"{handle}(s)" in r.out and "Key Hash:" not in r.out
    r = await mgmt.ok("findKey", "-l", "walkthrough")
    assert handle in r.out.splitlines()

    r = await mgmt.ok("deleteKey", "-k", handle)
    assert "Cfm3DeleteKey returned: 0x00 : HSM Return: SUCCESS" in r.out and f"Key {handle} deleted on 1 node" in r.out
    failed(await mgmt("getKeyInfo", "-k", handle), "NOT_FOUND")
    failed(await mgmt("deleteKey", "-k", handle), "NOT_FOUND")
    assert "0xa8 : HSM Error: Invalid object handle" in (await mgmt("deleteKey", "-k", handle)).err

    r = await mgmt.ok("deleteUser", "CU", "alice")
    assert r.out.startswith("Deleting user alice(CU) on 1 node")
    assert "alice" not in (await mgmt.ok("listUsers")).out
    r = await mgmt.ok("genRandom", "16")
    assert re.fullmatch(r"[0-9a-f]{32}\n", r.out)


async def test_json_output_parses(lab: Lab, tmp_path: Path) -> None:
    node, mgmt = await active_node(lab, tmp_path, HSM_CU_PASSWORD=CU_PASSWORD)

    users = json.loads((await mgmt.ok("--json", "listUsers")).out)
    [server] = users["servers"]
    assert server["endpoint"] == node.endpoint
    assert {(u["username"], u["user_type"]) for u in server["users"]} == {("admin", "CO"), ("kmsuser", "CU")}
    kmsuser = next(u["user_id"] for u in server["users"] if u["username"] == "kmsuser")

    created = json.loads((await mgmt.ok("genSymKey", "-t", "31", "-s", "16", "-l", "j", "--json")).out)
    handle = created["key_handle"]
    assert isinstance(handle, int) and created["write"]["replicas"] == 1 and created["write"]["members"] == 1
    assert created["servers"][0]["holds_write"] is True

    info = json.loads((await mgmt.ok("getKeyInfo", "-k", str(handle), "--json")).out)["servers"][0]
    assert info["key_handle"] == handle and info["owner_user_id"] == kmsuser and info["key_size_bytes"] == 16
    assert info["extractable"] is False and info["token"] is True

    keys = json.loads((await mgmt.ok("--json", "findAllKeys", "0", "1")).out)["servers"][0]
    assert keys["keys"] == [{"key_handle": handle, "owned": True}] and len(keys["key_hash"]) == 64

    found = json.loads((await mgmt.ok("--json", "findKey", "-l", "j")).out)
    assert found["servers"][0]["key_handles"] == [handle]

    status = json.loads((await mgmt.ok("--json", "status")).out)["servers"][0]
    assert status["state"] == "ACTIVE" and status["tls_verified"] is True and status["key_count"] == 1

    rnd = json.loads((await mgmt.ok("--json", "genRandom", "32")).out)
    assert rnd["length"] == 32

    # HSM_JSON=1 is the environment equivalent of --json
    assert "servers" in json.loads((await mgmt.ok("listUsers", HSM_JSON="1")).out)

    login = json.loads((await mgmt.ok("--json", "loginHSM", "CU", "kmsuser", CU_PASSWORD)).out)
    assert login["HSM_SESSION"] == login["servers"][0]["session_token"]
    await mgmt.ok("logoutHSM", HSM_SESSION=login["HSM_SESSION"])


async def test_wrong_password_is_a_clean_refusal(lab: Lab, tmp_path: Path) -> None:
    node, mgmt = await active_node(lab, tmp_path)
    r = await mgmt("--password", "wrongPassword9", "listUsers")
    assert r.rc == 0   # listUsers needs no login
    r = await mgmt("--password", "wrongPassword9", "createUser", "CU", "bob", "bobPassword1")
    failed(r, "UNAUTHENTICATED")
    assert "Login failed" in r.err and "loginHSM CO admin" in r.err
    assert r.err.count("\n") == 1
    r = await mgmt("--username", "kmsuser", "--password", "wrongPassword9", "genRandom", "4")
    failed(r, "UNAUTHENTICATED")
    users = (await mgmt.ok("listUsers")).out
    assert re.search(r"^\s+\d+\s+CU\s+kmsuser\s+NO\s+1\s", users, re.M), users   # LoginFailureCnt

    # no password at all (and no terminal to prompt on) is a usage error
    r = await mgmt("genRandom", "4")
    failed(r, "INVALID_ARGUMENT", rc=2)
    assert "HSM_PASSWORD" in r.err


async def test_missing_trust_anchor_is_refused_helpfully(lab: Lab, tmp_path: Path) -> None:
    node, mgmt = await active_node(lab, tmp_path)
    del mgmt.env["HSM_TRUST_ANCHOR"]
    for args in (["listUsers"], ["createUser", "CU", "bob", "bobPassword1"], ["status"]):
        r = await mgmt(*args)
        failed(r, "FAILED_PRECONDITION", rc=2)
        assert "--trust-anchor" in r.err and "HSM_TRUST_ANCHOR" in r.err
    assert "is ACTIVE" in (await mgmt("status")).err

    # an initialised node is not initialised again
    r = await mgmt("initialize", "--trust-anchor-dir", str(tmp_path / "other-ca"))
    failed(r, "FAILED_PRECONDITION")
    assert "already initialised" in r.err and not (tmp_path / "other-ca").exists()

    # a trust anchor the node's certificate does not chain to: said so, not a raw TLS error only
    other = Lab(tmp_path / "other").anchor.cert_path
    r = await mgmt("--trust-anchor", str(other), "listUsers")
    failed(r, "UNAVAILABLE")
    assert "does not chain to the trust anchor" in r.err
    # one sentence a person can act on: which anchor, what the node presented, what to pass
    assert "CERTIFICATE_VERIFY_FAILED" not in r.err and "SSL_ERROR" not in r.err, r.err
    assert f"the CA in {other} (CN=customerCA" in r.err and "did not issue" in r.err and "--trust-anchor" in r.err
    failed(await mgmt("--trust-anchor", str(tmp_path / "nope.crt"), "listUsers"), "INVALID_ARGUMENT", rc=2)


async def test_status_with_trust_anchor_still_shows_uninitialised_nodes(lab: Lab, tmp_path: Path) -> None:
    active, mgmt = await active_node(lab, tmp_path)
    fresh = await lab.start_node()
    r = await mgmt.ok("status", HSM_ENDPOINTS=f"{active.endpoint},{fresh.endpoint}")
    blocks = r.out.split("Status of ")
    assert "ACTIVE" in blocks[1] and "verified with the trust anchor" in blocks[1]
    assert "UNINITIALIZED" in blocks[2] and "trust on first use" in blocks[2]
    # other commands refuse the unverifiable node, with a hint
    r = await mgmt("listUsers", HSM_ENDPOINTS=fresh.endpoint)
    failed(r, "UNAVAILABLE")
    assert "not initialised yet" in r.err


async def test_session_reuse_and_logged_in_user_protection(lab: Lab, tmp_path: Path) -> None:
    node, mgmt = await active_node(lab, tmp_path)
    r = await mgmt.ok("loginHSM", "CU", "kmsuser", CU_PASSWORD)
    m = re.fullmatch(r"export HSM_SESSION=([\w-]+)\n", r.out)
    assert m, r
    assert f"loginHSM success on server 0({node.endpoint})" in r.err
    session = m.group(1)

    # the session replaces credentials ...
    r = await mgmt.ok("genSymKey", "-t", "31", "-s", "32", "-l", "s", HSM_SESSION=session)
    handle = re.search(r"Key Handle: (\d+)", r.out).group(1)
    await mgmt.ok("getKeyInfo", "-k", handle, "--session", session)
    # ... and is still alive after the commands that used it: kmsuser is logged in,
    # so a CO may not change its password (CloudHSM rule)
    r = await mgmt("changePswd", "CU", "kmsuser", "newPassword1")
    failed(r, "FAILED_PRECONDITION")
    assert "logged in" in r.err

    r = await mgmt.ok("logoutHSM", HSM_SESSION=session)
    assert r.out == "unset HSM_SESSION\n"
    failed(await mgmt("findKey", HSM_SESSION=session), "UNAUTHENTICATED")
    r = await mgmt.ok("changePswd", "CU", "kmsuser", "newPassword1")
    assert r.out.startswith("Changing password for kmsuser(CU) on 1 node")
    await mgmt.ok("findKey", "--password", "newPassword1")
    failed(await mgmt("logoutHSM"), "INVALID_ARGUMENT", rc=2)


async def test_env_file_defaults_and_real_environment_wins(lab: Lab, tmp_path: Path) -> None:
    node, mgmt = await active_node(lab, tmp_path)
    env_dir = mgmt.cwd / ".kms-cluster"
    env_dir.mkdir()
    (env_dir / "env").write_text(
        "# written by kms-cluster\n"
        f"HSM_ENDPOINTS=127.0.0.1:{free_port()}\n"            # wrong on purpose: the real env wins
        f"export HSM_TRUST_ANCHOR='{lab.anchor.cert_path}'\n"
        f"HSM_CU_PASSWORD={CU_PASSWORD}\n")
    bare = Mgmt(mgmt.cwd, HSM_ENDPOINTS=node.endpoint)
    r = await bare.ok("genRandom", "8")
    assert len(r.out.strip()) == 16
    # the file's endpoint is used when the environment has none
    r = await Mgmt(mgmt.cwd)("listUsers")
    failed(r, "UNAVAILABLE")
    # HSM_ENV_FILE names another file
    other = tmp_path / "cluster.env"
    other.write_text(f"HSM_ENDPOINTS={node.endpoint}\nHSM_TRUST_ANCHOR={lab.anchor.cert_path}\n")
    assert "kmsuser" in (await Mgmt(tmp_path / "elsewhere", HSM_ENV_FILE=str(other)).ok("listUsers")).out
    failed(await Mgmt(tmp_path, HSM_ENV_FILE=str(tmp_path / "missing.env"))("listUsers"), "INVALID_ARGUMENT", rc=2)


async def test_several_endpoints_report_per_server(lab: Lab, tmp_path: Path) -> None:
    node, mgmt = await active_node(lab, tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    r = await mgmt("--endpoint", node.endpoint, "--endpoint", dead, "listUsers")
    assert r.rc == 1, r
    assert f"Users on server 0({node.endpoint}):" in r.out
    assert f"hsm-mgmt: server 1({dead}): UNAVAILABLE: " in r.err

    # a write goes to the first endpoint that answers, and says where it landed
    r = await mgmt.ok("--endpoint", dead, "--endpoint", node.endpoint, "createUser", "CU", "carol", "carolPassw1")
    assert f"createUser success on server 1({node.endpoint})" in r.out
    assert f"status unknown on server 0({dead})" in r.out

    # --node-only: each endpoint by itself; a failure on one is reported and exits 1
    r = await mgmt("--node-only", "--endpoint", node.endpoint, "--endpoint", dead, "createUser", "CU", "dave",
                   "davePassw1")
    assert r.rc == 1 and "--node-only" in r.out and f"createUser success on server 0({node.endpoint})" in r.out
    assert f"server 1({dead}): UNAVAILABLE" in r.err
    failed(await mgmt("--node-only", "listUsers"), "INVALID_ARGUMENT", rc=2)


async def test_two_node_cluster_replicated_and_node_only_writes(lab: Lab, tmp_path: Path) -> None:
    first, second = await lab.start_node(), await lab.start_node()
    await lab.init_active(first)
    await first.stub().AddNode(pb.AddNodeRequest(session_token=await co(first.stub()), endpoint=second.endpoint,
                                                 peer_endpoint=second.peer_endpoint))
    mgmt = Mgmt(tmp_path / "work", HSM_ENDPOINTS=f"{first.endpoint},{second.endpoint}",
                HSM_TRUST_ANCHOR=str(lab.anchor.cert_path), HSM_CO_PASSWORD=CO_PASSWORD, HSM_CU_PASSWORD=CU_PASSWORD)

    async def joined() -> bool:
        r = await mgmt("status", "--json")
        return r.rc == 0 and [s["state"] for s in json.loads(r.out)["servers"]] == ["ACTIVE", "ACTIVE"]
    await wait_until(joined, what="the second node to join")

    r = await mgmt.ok("createUser", "CU", "kmsuser", CU_PASSWORD)
    assert r.out.splitlines() == ["Creating User kmsuser(CU) on 2 nodes",
                                  f"createUser success on server 0({first.endpoint})",
                                  f"createUser success on server 1({second.endpoint})"], r
    r = await mgmt.ok("genSymKey", "-t", "31", "-s", "32", "-l", "replicated", "--min-replicas", "2")
    handle = re.search(r"Key Handle: (\d+)", r.out).group(1)
    assert f"Key {handle} stored on 2 nodes" in r.out
    r = await mgmt.ok("getKeyInfo", "-k", handle)
    assert r.out.count("Token/Flash Key,") == 2

    # CMU's partial fan-out: the user lands on the first HSM only, and the hashes say so
    r = await mgmt.ok("--node-only", "--endpoint", first.endpoint, "createUser", "CU", "partial", "partialPw1")
    assert "on 1 node (--node-only" in r.out
    listing = (await mgmt.ok("listUsers")).out.split("Users on server 1")
    assert "partial" in listing[0] and "partial" not in listing[1]
    r = await mgmt.ok("findAllKeys", "0", "1")
    assert "Key hashes differ" in r.out
    # ... and syncUser repairs it
    r = await mgmt.ok("syncUser", "partial")
    assert r.out.startswith("Syncing user partial on 2 nodes"), r
    assert "partial" in (await mgmt.ok("listUsers")).out.split("Users on server 1")[1]
    assert "Key hashes match on all 2 servers" in (await mgmt.ok("findAllKeys", "0", "1")).out


@pytest.mark.parametrize("args, message", [
    (["genSymKey", "-t", "30", "-s", "32", "-l", "x"], "only -t 31 (AES)"),
    (["genSymKey", "-t", "31", "-s", "24", "-l", "x"], "invalid choice"),
    (["shareKey", "-k", "1", "-u", "x"], "user ids"),
    (["frobnicate"], "invalid choice"),
    (["--endpoint", "nohostport", "status"], "host:port"),
])
async def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = await Mgmt(tmp_path, HSM_TRUST_ANCHOR=str(tmp_path / "unused.crt"))(*args)
    assert r.rc == 2, r
    assert "hsm-mgmt: INVALID_ARGUMENT: " in r.err and message in r.err, r


async def test_decrypt_rejects_input_that_is_not_encrypt_output(tmp_path: Path) -> None:
    Lab(tmp_path)   # a CA to point at; no node is contacted
    mgmt = Mgmt(tmp_path, HSM_TRUST_ANCHOR=str(tmp_path / "ca" / "customerCA.crt"), HSM_PASSWORD="x" * 8)
    r = await mgmt("decrypt", "--in", "-", stdin=b"not json")
    failed(r, "INVALID_ARGUMENT", rc=2)
    assert "JSON that encrypt wrote" in r.err


# ------------------------------------------------------------------ passwords off the command line


def run_on_a_terminal(args: list[str], env: dict[str, str], typed: list[str], timeout: float = 60) -> Result:
    """hsm-mgmt with a pseudo-terminal for stdin, stdout and stderr (so getpass prompts on it),
    typing each of ``typed`` in turn when a prompt (a line ending in ':') is shown."""
    import select
    import subprocess
    import time

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hsm_node.mgmt", *args], env=env, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    out, pending, deadline, answered = b"", list(typed), time.monotonic() + timeout, 0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if pending and out[answered:].rstrip().endswith(b":"):  # a new prompt since the last answer
                os.write(master, pending.pop(0).encode() + b"\n")
                answered = len(out)
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hsm-mgmt {args} still runs; its terminal showed: {out!r}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return Result(rc, out.decode(errors="replace").replace("\r\n", "\n"), "")


def with_fd(secret: str) -> tuple[int, int]:
    """A pipe holding ``secret``: (read end for the child, write end closed)."""
    r, w = os.pipe()
    os.write(w, secret.encode() + b"\n")
    os.close(w)
    return r, r


async def test_passwords_from_a_descriptor_the_environment_or_a_prompt(lab: Lab, tmp_path: Path) -> None:
    node = await lab.start_node()
    mgmt = Mgmt(tmp_path / "work", HSM_ENDPOINTS=node.endpoint)
    await mgmt.ok("initialize")
    mgmt.env["HSM_TRUST_ANCHOR"] = str((mgmt.cwd / "ca" / "customerCA.crt").resolve())

    # activate: the new CO password from a file descriptor
    read_end, _ = with_fd(CO_PASSWORD)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hsm_node.mgmt", "activate", "--new-password-fd", str(read_end), cwd=mgmt.cwd,
        env=mgmt.env, pass_fds=(read_end,), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    os.close(read_end)
    assert proc.returncode == 0, err
    # createUser: the CO login password from a descriptor, the new user's from HSM_NEW_PASSWORD
    read_end, _ = with_fd(CO_PASSWORD)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hsm_node.mgmt", "--password-fd", str(read_end), "createUser", "CU", "alice",
        cwd=mgmt.cwd, env={**mgmt.env, "HSM_NEW_PASSWORD": "alicePassword1"}, pass_fds=(read_end,),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    os.close(read_end)
    assert proc.returncode == 0, err
    assert "Creating User alice(CU)" in out.decode()
    await mgmt.ok("--username", "alice", "genRandom", "4", HSM_CU_PASSWORD="alicePassword1")  # logs in and out

    # no password anywhere and no terminal: a usage error that names the ways
    r = await mgmt("changePswd", "CU", "alice", HSM_CO_PASSWORD=CO_PASSWORD)
    failed(r, "INVALID_ARGUMENT", rc=2)
    assert "--new-password-fd" in r.err and "HSM_NEW_PASSWORD" in r.err

    # on a terminal, as CloudHSM's tools do: the CO password, then the new one twice
    terminal_env = {**mgmt.env}
    r = await asyncio.to_thread(run_on_a_terminal, ["changePswd", "CU", "alice"], terminal_env,
                                [CO_PASSWORD, "alicePassword2", "alicePassword2"])
    assert r.rc == 0, r
    assert "Password for CO admin:" in r.out and "Confirm the new password of alice:" in r.out, r
    assert "alicePassword2" not in r.out and CO_PASSWORD not in r.out  # not echoed
    r = await asyncio.to_thread(run_on_a_terminal, ["loginHSM", "CU", "alice", "-hpswd"], terminal_env,
                                ["alicePassword2"])
    assert r.rc == 0 and "loginHSM success" in r.out, r
    session = r.out.strip().splitlines()[-1].removeprefix("export HSM_SESSION=")
    await mgmt.ok("logoutHSM", HSM_SESSION=session)
    # two different entries change nothing
    r = await asyncio.to_thread(run_on_a_terminal, ["changePswd", "CU", "alice", "-hpswd"], terminal_env,
                                [CO_PASSWORD, "alicePassword3", "alicePassword4"])
    assert r.rc == 2 and "differ" in r.out, r
    await mgmt.ok("--username", "alice", "genRandom", "4", HSM_CU_PASSWORD="alicePassword2")


async def test_wait_for_a_node_started_in_the_background(lab: Lab, tmp_path: Path) -> None:
    """The README's first steps as a shell runs them: `hsm-node ... --log-file n1.log &`, then at once
    `hsm-mgmt --wait 30 initialize --trust-anchor-dir ./ca`, in a directory whose environment names
    another cluster's trust anchor. The command waits for the node instead of failing with
    UNAVAILABLE, the explicit directory wins, and the node's log lines stay out of the terminal."""
    work = tmp_path / "fresh"
    (work / ".kms-cluster").mkdir(parents=True)
    (work / ".kms-cluster" / "env").write_text(f"HSM_TRUST_ANCHOR={lab.anchor.cert_path}\n")   # another cluster's
    node = lab.node(extra_args=["--log-file", str(tmp_path / "n1.log")])
    mgmt = Mgmt(work)
    node.start()
    r = await mgmt.ok("--endpoint", node.endpoint, "--wait", "30", "initialize", "--trust-anchor-dir", "./ca")
    assert r.out.startswith("Initialized") and node.endpoint in r.out.splitlines()[0]
    assert (work / "ca" / "customerCA.crt").exists()
    assert node.log_path.read_text() == ""                     # stdout/stderr: nothing
    assert '"event": "listening"' in (tmp_path / "n1.log").read_text()
    # a --trust-anchor flag that contradicts the directory is still refused
    bad = await mgmt("--endpoint", node.endpoint, "--trust-anchor", str(lab.anchor.cert_path), "initialize",
                     "--trust-anchor-dir", "./ca")
    failed(bad, "INVALID_ARGUMENT", rc=2)
    # nothing listening: --wait gives up after its time with one line saying so
    port = free_port()
    anchor = str(work / "ca" / "customerCA.crt")
    gone = await mgmt(f"--endpoint=127.0.0.1:{port}", "--wait", "0.5", "status", HSM_TRUST_ANCHOR=anchor)
    failed(gone, "UNAVAILABLE")
    assert f"127.0.0.1:{port} did not answer within 0.5 s (--wait)" in gone.err
