"""What hsm-node and kms-frontend keep is their user's only: files 0600, directories 0700,
whatever the umask they were started with; open modes found at start are fixed with a
warning; and neither process can leave a core dump (RLIMIT_CORE 0)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import FrontendProcess, Lab, co

PW = "Password-1"


def loose(*roots: Path) -> list[str]:
    out = []
    for root in roots:
        for path in [root, *root.rglob("*")]:
            mode = path.lstat().st_mode & 0o777
            if not path.is_symlink() and mode & 0o077:
                out.append(f"{path} {mode:04o}")
    return out


def core_limit(pid: int) -> str:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max core file size"))
    return " ".join(line.split()[4:6])


def made_private_events(log: Path) -> set[str]:
    events = set()
    for line in log.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "made_private":
            events.add(Path(doc["path"]).name)
    return events


async def test_node_and_frontend_keep_everything_private_and_fix_what_they_find_open(lab: Lab, tmp_path) -> None:
    old_umask = os.umask(0o022)  # as a shell usually starts them: files 0644 unless they see to it
    try:
        node = await lab.start_node()
        await lab.init_active(node)  # activation takes a backup
        stub = node.stub()
        await stub.CreateUser(pb.CreateUserRequest(session_token=await co(stub), user_type=pb.CU, username="kmsuser",
                                                   password=PW))
        frontend = FrontendProcess(tmp_path, [node.endpoint])
        frontend.start()
        await frontend.wait_ready()
    finally:
        os.umask(old_umask)
    master_key = tmp_path / "frontend-master.key"
    kept = [node.data_dir, lab.backup_dir, frontend.data_dir, master_key]
    assert (node.data_dir / "node.db-wal").exists() and (frontend.data_dir / "metadata.db").exists()
    assert (frontend.data_dir / "cloudhsm.db").exists()  # the CloudHSM control plane's records
    assert list(lab.backup_dir.rglob("*")), "no backup was written"
    assert not loose(*kept)
    assert (core_limit(node.proc.pid), core_limit(frontend.proc.pid)) == ("0 0", "0 0")

    # modes opened up while they were stopped (an older version, a careless copy) are fixed at start
    await node.stop()
    await frontend.stop()
    frontend.backup_dir.mkdir(exist_ok=True)  # the control plane's backup store (made when first used)
    kept.append(frontend.backup_dir)
    opened = [node.data_dir, node.data_dir / "node.db", lab.backup_dir, *lab.backup_dir.rglob("*"),
              frontend.data_dir / "metadata.db", frontend.data_dir / "cloudhsm.db", master_key,
              frontend.backup_dir]
    for path in opened:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    node.start()
    await node.wait_ready()
    frontend.start()
    await frontend.wait_ready()
    assert not loose(*kept)
    assert {"node.db", node.data_dir.name, lab.backup_dir.name} <= made_private_events(node.log_path)
    assert {"metadata.db", "cloudhsm.db", "frontend-master.key", frontend.backup_dir.name} <= \
        made_private_events(frontend.log_path)
    await frontend.stop()
