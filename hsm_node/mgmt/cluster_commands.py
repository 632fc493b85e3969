"""``hsm-mgmt`` cluster commands: members, consistency, adding and removing
nodes, backups and clusters created from backups (the CloudHSM API's cluster,
HSM and backup calls, as operator commands)."""
from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from protos.hsm.v1 import hsm_pb2 as pb

from . import output as out
from .context import Cli


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ms else "-"


def _backup_state(value: int) -> str:
    return pb.BackupState.Name(value).removeprefix("BACKUP_")


def backup_dict(b: pb.Backup) -> dict[str, Any]:
    d = out.message_dict(b)
    d["state"] = _backup_state(b.state)
    return d


def _backups_text(backups: list[pb.Backup]) -> list[str]:
    rows = [(b.backup_id, b.cluster_id, _backup_state(b.state), b.trigger, _when(b.create_timestamp_ms),
             _when(b.delete_timestamp_ms), b.user_count, b.key_count, b.source_backup_id or "-") for b in backups]
    headers = ("Backup Id", "Cluster Id", "State", "Trigger", "Created", "Deletes", "Users", "Keys", "Source Backup")
    return [f"Number of backups found:{len(backups)}", "", *out.table(headers, rows)]


async def cmd_describe_cluster(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    c = await node.stub.DescribeCluster(pb.Empty(), timeout=cli.timeout)
    if cli.s.json:
        d = out.message_dict(c)
        d["state"] = out.state_name(c.state)
        for m in d.get("members", []):
            m["health"] = pb.MemberHealth.Name(m["health"]) if isinstance(m.get("health"), int) else m.get("health")
        print(out.to_json(d))
        return
    rows = [(m.ordinal, m.node_id, m.hsm_id, m.endpoint, pb.MemberHealth.Name(m.health), m.lag,
             (m.consistency_hash or "-")[:16]) for m in c.members]
    hashes = {m.consistency_hash for m in c.members if m.consistency_hash}
    print("\n".join([
        f"Cluster {c.cluster_id} ({out.state_name(c.state)}), as seen by {node.server}",
        f"\tCluster certificate SHA256  {c.cluster_certificate_sha256}",
        f"\tSource backup               {c.source_backup_id or '-'}",
        f"\tBackup retention            {c.backup_retention_days} days; periodic every {c.backup_interval_s} s",
        "", *out.table(("Ordinal", "Node Id", "HSM Id", "Endpoint", "Health", "Lag", "Consistency Hash"), rows), "",
        "Members agree." if len(hashes) <= 1 else "Members DIFFER: run checkConsistency, then syncUser/syncKey.",
    ]))


async def cmd_check_consistency(cli: Cli, args: argparse.Namespace) -> None:
    """The findAllKeys hash of every member, side by side."""
    node = await cli.first_node()
    desc = await node.stub.DescribeCluster(pb.Empty(), timeout=cli.timeout)
    servers = [out.Server(i, m.endpoint) for i, m in enumerate(desc.members)]  # every member, not just --endpoint

    async def status(server: Any) -> pb.NodeStatus:
        n = await cli.connect(server)
        return await n.stub.GetStatus(pb.Empty(), timeout=cli.timeout)
    outcomes = await cli.each_server(status, servers)
    ok = cli.settle(outcomes)
    hashes = {o.value.consistency_hash for o in ok}
    agree = len(hashes) == 1 and len(ok) == len(outcomes)
    if cli.s.json:
        print(out.to_json({"cluster_id": desc.cluster_id, "consistent": agree, "servers": [
            {**o.server.as_dict(), "node_id": o.value.node_id, "consistency_hash": o.value.consistency_hash,
             "users": o.value.user_count, "keys": o.value.key_count, "positions": dict(o.value.positions)}
            if o.error is None else cli.error_entry(o) for o in outcomes]}))
    else:
        rows = [(str(o.server), o.value.node_id, o.value.user_count, o.value.key_count, o.value.consistency_hash)
                for o in ok]
        print("\n".join([*out.table(("Server", "Node Id", "Users", "Keys", "Consistency Hash"), rows), "",
                         "All members agree." if agree else "Members DIFFER (or did not answer)."]))
    if not agree:
        cli.exit_code = max(cli.exit_code, 1)


async def cmd_add_node(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    token = await cli.token(node, "CO")
    r = await node.stub.AddNode(pb.AddNodeRequest(session_token=token, endpoint=args.new_endpoint,
                                                  peer_endpoint=args.new_peer_endpoint), timeout=max(cli.timeout, 90))
    if cli.s.json:
        print(out.to_json({"member": out.message_dict(r.member), "backup_id": r.backup_id}))
        return
    print(f"Added {r.member.node_id} ({r.member.hsm_id}) at {r.member.endpoint} as member {r.member.ordinal},"
          f" seeded from backup {r.backup_id}; it catches up from its peers now.")


async def cmd_remove_node(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    token = await cli.token(node, "CO")
    r = await node.stub.RemoveNode(pb.RemoveNodeRequest(session_token=token, node_id=args.node_id),
                                   timeout=cli.timeout)
    if cli.s.json:
        print(out.to_json({"node_id": args.node_id, "backup_id": r.backup_id}))
        return
    print(f"Removed {args.node_id}; backup {r.backup_id} was taken first.")


async def _show_backup(cli: Cli, b: pb.Backup, verb: str) -> None:
    if cli.s.json:
        print(out.to_json(backup_dict(b)))
    else:
        print(f"{verb} backup {b.backup_id} of {b.cluster_id}: {_backup_state(b.state)}"
              + (f", deleted for good after {_when(b.delete_timestamp_ms)}" if b.delete_timestamp_ms else "")
              + f" ({b.user_count} users, {b.key_count} keys, {b.size_bytes} bytes)")


async def cmd_create_backup(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    b = await node.stub.CreateBackup(pb.CreateBackupRequest(session_token=await cli.token(node, "CO")),
                                     timeout=max(cli.timeout, 120))
    await _show_backup(cli, b, "Created")


async def cmd_list_backups(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    r = await node.stub.ListBackups(pb.ListBackupsRequest(cluster_id=args.cluster_id or "",
                                                          include_deleted=args.include_deleted), timeout=cli.timeout)
    if cli.s.json:
        print(out.to_json({"backups": [backup_dict(b) for b in r.backups]}))
    else:
        print("\n".join(_backups_text(list(r.backups))))


async def cmd_describe_backup(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    b = await node.stub.DescribeBackup(pb.BackupRequest(backup_id=args.backup_id), timeout=cli.timeout)
    if cli.s.json:
        print(out.to_json(backup_dict(b)))
    else:
        print("\n".join(_backups_text([b])))


async def cmd_delete_backup(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    b = await node.stub.DeleteBackup(pb.BackupRequest(session_token=await cli.token(node, "CO"),
                                                      backup_id=args.backup_id), timeout=cli.timeout)
    await _show_backup(cli, b, "Deleting")


async def cmd_restore_backup(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    b = await node.stub.RestoreBackup(pb.BackupRequest(session_token=await cli.token(node, "CO"),
                                                       backup_id=args.backup_id), timeout=cli.timeout)
    await _show_backup(cli, b, "Restored")


async def cmd_set_retention(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    c = await node.stub.SetBackupRetention(pb.SetBackupRetentionRequest(
        session_token=await cli.token(node, "CO"), days=args.days), timeout=cli.timeout)
    print(out.to_json({"cluster_id": c.cluster_id, "backup_retention_days": c.backup_retention_days})
          if cli.s.json else f"Backup retention of {c.cluster_id}: {c.backup_retention_days} days")


async def cmd_create_cluster_from_backup(cli: Cli, args: argparse.Namespace) -> None:
    """Turn an empty node into the first member of a NEW cluster seeded from a backup."""
    server = cli.servers[0]
    node = await cli.connect(server, tofu=True)
    r = await node.stub.RestoreCluster(pb.RestoreClusterRequest(backup_id=args.backup_id),
                                       timeout=max(cli.timeout, 120))
    if cli.s.json:
        print(out.to_json({**server.as_dict(), "cluster_id": r.cluster_id, "source_backup_id": r.source_backup_id}))
        return
    print(f"{server} is now cluster {r.cluster_id}, created from backup {r.source_backup_id}: same users, keys and"
          " cluster certificate (it shares the original's backup history). Add nodes with addNode.")


COMMANDS = [
    ("describeCluster", cmd_describe_cluster, "members, their health, lag and consistency hash"),
    ("checkConsistency", cmd_check_consistency, "compare every member's users/keys hash (exit 1 if they differ)"),
    ("addNode", cmd_add_node, "add an empty node: seeded from a fresh backup, then it catches up (as a CO)"),
    ("removeNode", cmd_remove_node, "remove a member after taking a backup (as a CO)"),
    ("createBackup", cmd_create_backup, "take a backup now (as a CO)"),
    ("listBackups", cmd_list_backups, "backups in the backup store"),
    ("describeBackup", cmd_describe_backup, "one backup's metadata"),
    ("deleteBackup", cmd_delete_backup, "PENDING_DELETION for 7 days, restorable meanwhile (as a CO)"),
    ("restoreBackup", cmd_restore_backup, "bring a PENDING_DELETION backup back to READY (as a CO)"),
    ("setBackupRetention", cmd_set_retention, "days (7..379) backups are kept; the newest is always kept (as a CO)"),
    ("createClusterFromBackup", cmd_create_cluster_from_backup,
     "make an empty node the first member of a new cluster restored from a backup"),
]
NO_ANCHOR = {"createClusterFromBackup"}


def add_arguments(name: str, sp: argparse.ArgumentParser) -> None:
    if name == "addNode":
        sp.add_argument("new_endpoint", metavar="endpoint", help="the new node's client endpoint host:port")
        sp.add_argument("new_peer_endpoint", metavar="peer-endpoint", help="its peer endpoint host:port")
    elif name == "removeNode":
        sp.add_argument("node_id", help="node id (see describeCluster)")
    elif name in ("describeBackup", "deleteBackup", "restoreBackup", "createClusterFromBackup"):
        sp.add_argument("backup_id")
    elif name == "listBackups":
        sp.add_argument("--cluster-id", help="only this cluster's backups")
        sp.add_argument("--include-deleted", action="store_true")
    elif name == "setBackupRetention":
        sp.add_argument("days", type=int)
