"""`kms-cluster up` as the README runs it: real processes, a CONNECTED store, resume, down."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from cluster_tools.launcher import Cluster
from protos.kms.v1 import auth as kms_auth
from protos.kms.v1 import kms_pb2 as kms
from protos.kms.v1 import kms_pb2_grpc as kms_grpc
from tests.harness import FrontendProcess, free_port, wait_until


def launcher(root, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster_tools.launcher", "--dir", str(root), *args],
                          capture_output=True, text=True, timeout=timeout)


async def describe(status: dict) -> kms.CustomKeyStoresListEntry:
    """As the account root whose pair `up` printed (a call without a signature is refused)."""
    credentials = Credentials(status["aws_access_key_id"], status["aws_secret_access_key"])
    async with kms_auth.aio_channel(status["kms_endpoint"], credentials, status["region"]) as ch:
        r = await kms_grpc.KmsStub(ch).DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(), timeout=10)
    assert len(r.custom_key_stores) == 1
    return r.custom_key_stores[0]


async def test_up_status_down_and_resume(tmp_path):
    root = tmp_path / "cluster"
    ports = ["--port", str(free_port()), "--aws-port", str(free_port()), "--metrics-port", str(free_port()),
             "--console-port", str(free_port()),
             "--address-prefix", f"127.{200 + os.getpid() % 50}"]
    try:
        up = launcher(root, "up", "--detach", *ports)
        assert up.returncode == 0, up.stderr
        assert "CONNECTED" in up.stdout and "kms create-key" in up.stdout
        assert f"Stop with: kms-cluster --dir {root} down" in up.stdout  # --detach says how to stop
        again = launcher(root, "up", "--detach")          # "make sure it runs": it does, nothing else happens
        assert again.returncode == 0 and "already running" in again.stdout, again
        status = json.loads(launcher(root, "status", "--json").stdout)
        assert status["cluster_id"].startswith("cluster-") and status["custom_key_store_id"].startswith("cks-")
        assert [n["health"] for n in status["nodes"]] == ["ACTIVE"] * 3
        # created through the CloudHSM control plane: the same cluster and HSM ids there
        assert status["cluster"]["cluster_id"] == status["cluster_id"] and status["cluster"]["state"] == "ACTIVE"
        assert sorted(h["hsm_id"] for h in status["cluster"]["hsms"]) == sorted(n["hsm_id"] for n in status["nodes"])
        assert len({h["availability_zone"] for h in status["cluster"]["hsms"]}) == 3
        assert status["aws_endpoint_url"].startswith("http://127.0.0.1:") and status["aws_access_key_id"]
        metrics = urllib.request.urlopen(status["frontend"]["metrics"], timeout=10).read().decode()
        assert "kms_custom_key_store_state" in metrics
        # the web console is on, printed, and in status
        assert f"Web console:           {status['console_url']}" in up.stdout
        signin = urllib.request.urlopen(status["console_url"] + "signin", timeout=10).read().decode()
        assert 'id="access_key_id"' in signin
        assert "hsm_keys" in urllib.request.urlopen(status["nodes"][0]["metrics"], timeout=10).read().decode()
        store = await describe(status)
        assert store.connection_state == "CONNECTED" and store.custom_key_store_id == status["custom_key_store_id"]
        env = (root / "env").read_text()
        assert "HSM_TRUST_ANCHOR=" in env and "HSM_CO_PASSWORD=" in env and "KMS_ENDPOINT=" in env
        assert (root / "env").stat().st_mode & 0o077 == 0  # credentials: owner only
        # hsm-mgmt picks the environment file up: the operator can act at once
        users = subprocess.run([sys.executable, "-m", "hsm_node.mgmt", "--json", "listUsers"], capture_output=True,
                               text=True, env={"HSM_ENV_FILE": str(root / "env"), "PATH": ""}, timeout=60)
        assert users.returncode == 0, users.stderr
        assert {"admin", "kmsuser"} <= {u["username"] for s in json.loads(users.stdout)["servers"] for u in s["users"]}

        down = launcher(root, "down")
        assert down.returncode == 0
        assert not any(n["running"] for n in json.loads(launcher(root, "status", "--json").stdout)["nodes"])

        # a later `up` takes a principals file; a bad one is refused before anything starts
        bad, good = tmp_path / "bad.json", tmp_path / "principals.json"
        bad.write_text('{"principals": [\n  {"arn": "arn:aws:iam::111122223333:user/x", "acces_keys": []}\n]}')
        refused = launcher(root, "up", "--detach", "--principals", str(bad))
        assert refused.returncode == 1 and f"{bad}:2:" in refused.stderr and "acces_keys" in refused.stderr
        assert not any(n["running"] for n in json.loads(launcher(root, "status", "--json").stdout)["nodes"])
        good.write_text(json.dumps({"principals": [
            {"arn": "arn:aws:iam::111122223333:user/ops", "access_keys": [{"id": "AKIAOPS0000000000001",
                                                                           "secret": "ops-secret-ops-secret"}],
             "policies": [{"Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": "kms:List*", "Resource": "*"}]}]}]}))
        again = launcher(root, "up", "--detach", "--principals", str(good))
        assert again.returncode == 0, again.stderr
        resumed = json.loads(launcher(root, "status", "--json").stdout)
        assert resumed["cluster_id"] == status["cluster_id"]
        assert resumed["custom_key_store_id"] == status["custom_key_store_id"]
        assert (await describe(resumed)).connection_state == "CONNECTED"
        ops = boto3.client("kms", endpoint_url=resumed["aws_endpoint_url"], region_name=resumed["region"],
                           aws_access_key_id="AKIAOPS0000000000001", aws_secret_access_key="ops-secret-ops-secret")
        assert ops.list_keys()["Keys"] == []
        with pytest.raises(ClientError) as denied:
            ops.describe_custom_key_stores()
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "AWS_ENDPOINT_URL_STS=" in (root / "env").read_text()
    finally:
        launcher(root, "down")


# ------------------------------------------------------------------ secrets, files, a crashed frontend

# Runs kms-cluster as the README does, recording (a Python audit hook) the argv of every process
# it starts, and the passwords it makes (so that the test can look for them everywhere).
RUNNER = r"""
import json, sys
execs, made = open(sys.argv[1], "a"), open(sys.argv[2], "a")

def hook(event, args):
    if event == "subprocess.Popen":
        execs.write(json.dumps([str(a) for a in args[1]]) + "\n"); execs.flush()
    elif event in ("os.exec", "os.posix_spawn"):
        execs.write(json.dumps([str(a) for a in args[1]]) + "\n"); execs.flush()

sys.addaudithook(hook)
import cluster_tools.launcher as launcher
made_by = launcher.password

def recorded(n=24):
    value = made_by(n)
    made.write(value + "\n"); made.flush()
    return value

launcher.password = recorded
launcher.main(sys.argv[3:])
"""


class Watched:
    """kms-cluster runs whose children are recorded, and what `ps` showed meanwhile."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "runner.py").write_text(RUNNER)
        self.execs, self.made = tmp / "execs.jsonl", tmp / "made.txt"
        self.seen_in_ps: set[bytes] = set()

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        stop = threading.Event()

        def sample() -> None:  # every process's command line, as `ps` shows it to any user
            while not stop.is_set():
                for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                    try:
                        self.seen_in_ps.add(cmdline.read_bytes())
                    except OSError:
                        pass
                time.sleep(0.005)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            return subprocess.run([sys.executable, str(self.tmp / "runner.py"), str(self.execs), str(self.made),
                                   *args], capture_output=True, text=True, timeout=timeout)
        finally:
            stop.set()
            sampler.join()

    def argvs(self) -> list[list[str]]:
        return [json.loads(line) for line in self.execs.read_text().splitlines()]

    def passwords(self) -> list[str]:
        return self.made.read_text().split() if self.made.exists() else []


def env_file(root: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (root / "env").read_text().splitlines() if "=" in line)


def assert_no_secret_on_a_command_line(watched: Watched, secrets: list[str], *, servers: bool = True) -> None:
    assert secrets and all(len(x) >= 16 for x in secrets), secrets
    argvs = watched.argvs()
    assert any("hsm_node.mgmt" in a for argv in argvs for a in argv), argvs  # it did run hsm-mgmt
    # the HSM nodes (the frontend's control plane starts them: seen in ps, not through the hook)
    assert not servers or any(b"hsm_node.server" in c for c in watched.seen_in_ps)
    leaks = [argv for argv in argvs for x in secrets if any(x in a for a in argv)]
    assert not leaks, f"a password on a command line: {leaks}"
    assert len(watched.seen_in_ps) > 10
    seen = [c.replace(b"\0", b" ").decode(errors="replace") for c in watched.seen_in_ps
            for x in secrets if x.encode() in c]
    assert not seen, f"a password visible in ps: {seen}"


def assert_private(root: Path) -> list[Path]:
    """Every directory 0700 and every file 0600 (or stricter) under ``root``; the files."""
    files, loose = [], []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            loose.append(f"{path} {mode:04o}")
        if path.is_file():
            files.append(path)
    assert not loose, f"open to other users: {loose}"
    return files


def core_limit(pid: int) -> str:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max core file size"))
    return " ".join(line.split()[4:6])


@pytest.fixture(scope="module")
def watched_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("watched")
    root = tmp / "cluster"
    watched = Watched(tmp / "watch")
    ports = ["--port", str(free_port()), "--aws-port", str(free_port()), "--metrics-port", str(free_port()),
             "--console-port", str(free_port()), "--address-prefix", f"127.{100 + os.getpid() % 50}"]
    up = watched.run("--dir", str(root), "up", "--detach", "--aws-tls", *ports)
    assert up.returncode == 0, up.stderr
    yield root, watched
    launcher(root, "down")


SDK_CALLS = r"""
import boto3
kms = boto3.client("kms")  # endpoint, Region, key pair and the CA to trust: all from the environment
store = kms.describe_custom_key_stores()["CustomKeyStores"][0]
key = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store["CustomKeyStoreId"])["KeyMetadata"]["KeyId"]
blob = kms.encrypt(KeyId=key, Plaintext=b"over https")["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over https"
print(boto3.client("sts").get_caller_identity()["Arn"], store["ConnectionState"],
      len(boto3.client("cloudhsmv2").describe_clusters()["Clusters"]))
"""


async def test_with_aws_tls_boto3_and_the_aws_cli_trust_the_endpoint_through_the_env_file(watched_cluster) -> None:
    root, _ = watched_cluster
    env = env_file(root)
    port = json.loads((root / "state.json").read_text())["aws_port"]
    assert env["AWS_CA_BUNDLE"] == str(root / "ca" / "customerCA.crt")
    for name in ("AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_CLOUDHSM_V2"):
        assert env[name] == f"https://127.0.0.1:{port}", name
    assert json.loads(launcher(root, "status", "--json").stdout)["aws_endpoint_url"] == f"https://127.0.0.1:{port}"
    clean = {"PATH": os.environ["PATH"], "HOME": str(root), **env}  # nothing but the env file
    r = subprocess.run([sys.executable, "-c", SDK_CALLS], env=clean, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["arn:aws:iam::111122223333:root", "CONNECTED", "1"]
    if shutil.which("aws"):
        cli = subprocess.run(["aws", "kms", "list-keys", "--output", "json"], env=clean, capture_output=True,
                             text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert len(json.loads(cli.stdout)["Keys"]) >= 1
    without_ca = {k: v for k, v in clean.items() if k != "AWS_CA_BUNDLE"}
    r = subprocess.run([sys.executable, "-c", SDK_CALLS], env=without_ca, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "SSL" in r.stderr  # it is the CA that makes it trusted


async def test_no_password_is_ever_on_a_command_line_the_launcher_starts(watched_cluster) -> None:
    root, watched = watched_cluster
    env = env_file(root)
    secrets_ = [*watched.passwords(), env["AWS_SECRET_ACCESS_KEY"]]
    assert env["HSM_CO_PASSWORD"] in secrets_ and len(watched.passwords()) == 2  # CO, kmsuser's first
    assert_no_secret_on_a_command_line(watched, secrets_)


async def test_state_keeps_no_secret_and_the_env_file_is_their_only_home(watched_cluster) -> None:
    root, watched = watched_cluster
    env = env_file(root)
    co_password, kmsuser_first = watched.passwords()
    state = json.loads((root / "state.json").read_text())
    assert not {"co_password", "kmsuser_initial_password", "aws_secret_access_key"} & set(state), state
    homes: dict[str, list[str]] = {"CO password": [], "kmsuser's first password": [], "AWS secret key": []}
    for path in assert_private(root):
        data = path.read_bytes()
        for what, secret in (("CO password", co_password), ("kmsuser's first password", kmsuser_first),
                             ("AWS secret key", env["AWS_SECRET_ACCESS_KEY"])):
            if secret.encode() in data:
                homes[what].append(str(path.relative_to(root)))
    assert homes == {"CO password": ["env"], "kmsuser's first password": [], "AWS secret key": ["env"]}, homes


async def test_every_file_is_private_and_no_process_dumps_core(watched_cluster) -> None:
    root, _ = watched_cluster
    files = {str(p.relative_to(root)) for p in assert_private(root)}
    hsm = Cluster(root).state.nodes[0].hsm_id
    expected = {"state.json", "env", "logs/frontend.log", f"hsms/{hsm}/node.log", f"hsms/{hsm}/data/node.db",
                f"hsms/{hsm}/process.json", "frontend/metadata.db", "frontend/cloudhsm.db",
                "secrets/hsm-master.key", "secrets/frontend-master.key", "secrets/appliance.key",
                "ca/customerCA.key", "tls/aws-endpoint.key", "tls/aws-endpoint.crt"}
    assert expected <= files, expected - files
    assert any(f.startswith("backups/") for f in files), files  # activation took a backup
    assert any(f.endswith("node.db-wal") for f in files), files
    pids = Cluster(root).processes()
    assert {"frontend", "node1", "node2", "node3"} <= set(pids), pids
    assert {name: core_limit(pid) for name, pid in pids.items()} == {name: "0 0" for name in pids}


async def _dead(pid: int, what: str) -> None:
    await wait_until(lambda: not Path(f"/proc/{pid}").exists()
                     or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", what=what)


async def test_up_after_the_frontend_was_killed_starts_it_and_keeps_the_nodes(watched_cluster) -> None:
    root, watched = watched_cluster
    before = Cluster(root).processes()
    os.kill(before["frontend"], signal.SIGKILL)
    await _dead(before["frontend"], "the frontend to die")
    again = watched.run("--dir", str(root), "up", "--detach")
    assert again.returncode == 0, again.stderr
    assert "node1, node2, node3 already running" in again.stdout, again.stdout
    after = Cluster(root).processes()
    assert {n: after[n] for n in ("node1", "node2", "node3")} == {n: before[n] for n in ("node1", "node2", "node3")}
    assert after["frontend"] != before["frontend"]
    status = json.loads(launcher(root, "status", "--json").stdout)
    assert status["frontend"]["running"] and [n["health"] for n in status["nodes"]] == ["ACTIVE"] * 3
    assert (await describe(status)).connection_state == "CONNECTED"
    assert_no_secret_on_a_command_line(watched, [*watched.passwords(), env_file(root)["AWS_SECRET_ACCESS_KEY"]])
    # everything running: up changes nothing and says so
    third = launcher(root, "up", "--detach")
    assert third.returncode == 0 and "frontend already running" in third.stdout, third.stdout + third.stderr
    assert Cluster(root).processes() == after


async def test_up_after_a_node_was_killed_starts_it_and_keeps_the_frontend(watched_cluster) -> None:
    root, _ = watched_cluster
    before = Cluster(root).processes()
    os.kill(before["node2"], signal.SIGKILL)  # the frontend starts its nodes only when it starts itself
    await _dead(before["node2"], "node2 to die")
    again = launcher(root, "up", "--detach")
    assert again.returncode == 0, again.stderr
    assert "node1, node3, frontend already running" in again.stdout, again.stdout
    after = Cluster(root).processes()
    assert {n: after[n] for n in ("frontend", "node1", "node3")} == {n: before[n] for n in ("frontend", "node1", "node3")}
    assert after["node2"] != before["node2"]
    status = json.loads(launcher(root, "status", "--json").stdout)
    assert [n["health"] for n in status["nodes"]] == ["ACTIVE"] * 3


async def test_switching_aws_tls_on_a_running_cluster_restarts_the_frontend_and_keeps_the_nodes(watched_cluster):
    root, _ = watched_cluster
    nodes = {n: p for n, p in Cluster(root).processes().items() if n.startswith("node")}
    for flag, scheme in (("--no-aws-tls", "http"), ("--aws-tls", "https")):
        r = launcher(root, "up", "--detach", flag)
        assert r.returncode == 0, r.stderr
        assert "restarting the frontend" in r.stdout, r.stdout
        env = env_file(root)
        assert env["AWS_ENDPOINT_URL_KMS"].startswith(f"{scheme}://") and ("AWS_CA_BUNDLE" in env) == (scheme == "https")
        clean = {"PATH": os.environ["PATH"], "HOME": str(root), **env}
        check = subprocess.run([sys.executable, "-c", "import boto3; print(len(boto3.client('kms').list_keys()['Keys']))"],
                               env=clean, capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stderr
    assert {n: p for n, p in Cluster(root).processes().items() if n.startswith("node")} == nodes


async def test_provision_as_compose_init_runs_it_puts_no_password_on_a_command_line(lab, tmp_path) -> None:
    nodes = [await lab.start_node(f"hsm{i}") for i in (1, 2, 3)]
    pair = "AKIAEXAMPLEEXAMPLE23:" + "s3cret/" * 6  # the account root's, as compose's secrets volume holds it
    frontend = FrontendProcess(tmp_path, [n.endpoint for n in nodes], env={"KMS_AWS_ACCESS_KEYS": pair})
    frontend.start()
    await frontend.wait_ready()
    keys = tmp_path / "aws-access-keys"
    keys.write_text(pair)
    watched = Watched(tmp_path / "watch")
    try:
        args = ["--dir", str(tmp_path / "state"), "provision", f"--frontend={frontend.endpoint}",
                f"--aws-access-keys-file={keys}", *(f"--node={n.name}=127.0.0.1:{n.port}:{n.peer_port}" for n in nodes)]
        r = watched.run(*args)
        assert r.returncode == 0, r.stderr
        assert_no_secret_on_a_command_line(watched, [*watched.passwords(), "s3cret/" * 6], servers=False)
        again = watched.run(*args)  # compose's second `up`: changes nothing, still no password on argv
        assert again.returncode == 0, again.stderr
        assert_no_secret_on_a_command_line(watched, [*watched.passwords(), "s3cret/" * 6], servers=False)
        assert not {"co_password", "aws_secret_access_key"} & set(json.loads((tmp_path / "state" / "state.json")
                                                                             .read_text()))
    finally:
        await frontend.stop()


def test_down_stops_a_foreground_up(tmp_path):
    """`kms-cluster down` from another shell ends a foreground `up` cleanly, not only its processes."""
    root = tmp_path / "cluster"
    ports = ["--port", str(free_port()), "--aws-port", str(free_port()), "--metrics-port", str(free_port()),
             "--console-port", str(free_port()), "--address-prefix", f"127.{150 + os.getpid() % 50}"]
    out_path = tmp_path / "up.out"
    with open(out_path, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "cluster_tools.launcher", "--dir", str(root), "up", *ports],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while "Running." not in out_path.read_text():
            assert up.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.2)
        down = launcher(root, "down")
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0
        shown = out_path.read_text()
        assert "Stopping (kms-cluster down)..." in shown and "Stopped." in shown, shown
        assert "killed for an experiment" not in shown, shown
        status = json.loads(launcher(root, "status", "--json").stdout)
        assert not status["frontend"]["running"] and not any(n["running"] for n in status["nodes"])
    finally:
        if up.poll() is None:
            up.kill()
        launcher(root, "down")
