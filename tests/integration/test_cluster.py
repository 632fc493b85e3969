"""Three real hsm-node processes on loopback: replication, catch-up, membership,
backups and restore."""
from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest

from backup_store import BackupStore
from hsm_node import certs
from hsm_node.backup_crypto import backup_aad, open_backup
from protos.hsm.v1 import hsm_pb2 as pb
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc
from tests.harness import CU_PASSWORD, Lab, NodeProcess, co, login, wait_until


async def converged(nodes: list[NodeProcess]) -> bool:
    statuses = [await n.stub().GetStatus(pb.Empty(), timeout=3) for n in nodes]
    return len({s.consistency_hash for s in statuses}) == 1 and len({tuple(sorted(s.positions.items())) for s in statuses}) == 1


async def join(lab: Lab, via: NodeProcess, new: NodeProcess) -> pb.AddNodeResponse:
    token = await co(via.stub())
    r = await via.stub().AddNode(pb.AddNodeRequest(session_token=token, endpoint=new.endpoint,
                                                   peer_endpoint=new.peer_endpoint))
    new.anchor_pem = lab.anchor.cert_pem
    await new.reset_channel()
    return r


class Cluster:
    def __init__(self, lab: Lab, nodes: list[NodeProcess]) -> None:
        self.lab, self.nodes = lab, nodes

    async def cu(self, node: NodeProcess, name: str = "kmsuser") -> str:
        return await login(node.stub(), pb.CU, name, CU_PASSWORD)

    async def wait_converged(self, nodes: list[NodeProcess] | None = None, timeout: float = 30) -> None:
        await wait_until(lambda: converged(nodes or self.nodes), timeout=timeout, what="nodes to converge")


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("cluster"))
    nodes = [await lab.start_node() for _ in range(3)]
    await lab.init_active(nodes[0])
    for n in nodes[1:]:
        await join(lab, nodes[0], n)
    token = await co(nodes[0].stub())
    await nodes[0].stub().CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="kmsuser",
                                                          password=CU_PASSWORD))
    c = Cluster(lab, nodes)
    await c.wait_converged()
    yield c
    await lab.close()


async def test_cluster_reports_members_health_and_positions(cluster):
    await wait_until(lambda: _all_healthy(cluster.nodes[0]), what="all members healthy")
    desc = await cluster.nodes[1].stub().DescribeCluster(pb.Empty())
    assert desc.cluster_id.startswith("cluster-")
    assert desc.state == pb.ACTIVE
    assert len(desc.cluster_certificate_sha256) == 64
    assert sorted(m.ordinal for m in desc.members) == [1, 2, 3]
    assert {m.endpoint for m in desc.members} == {n.endpoint for n in cluster.nodes}
    me = [m for m in desc.members if m.health == pb.SELF]
    assert len(me) == 1 and me[0].positions


async def _all_healthy(node: NodeProcess) -> bool:
    desc = await node.stub().DescribeCluster(pb.Empty())
    return all(m.health in (pb.SELF, pb.HEALTHY) for m in desc.members)


async def test_user_and_key_made_on_one_node_work_on_the_others(cluster):
    n1, n2, n3 = cluster.nodes
    token = await co(n1.stub())
    created = await n1.stub().CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="alice",
                                                              password=CU_PASSWORD))
    assert created.write.replicas == 3 and created.write.members == 3
    alice2 = await cluster.cu(n2, "alice")
    key = await n2.stub().GenerateKey(pb.GenerateKeyRequest(session_token=alice2, key_size_bytes=32, label="shared-k",
                                                            min_replicas=2))
    assert key.write.replicas >= 2
    ct = await n2.stub().Encrypt(pb.EncryptRequest(session_token=alice2, key_handle=key.key_handle,
                                                   plaintext=b"across nodes", aad=b"ctx"))
    for node in (n1, n3):
        tok = await cluster.cu(node, "alice")
        await wait_until(lambda node=node, tok=tok: _has_key(node, tok, key.key_handle), what="key replicated")
        pt = await node.stub().Decrypt(pb.DecryptRequest(session_token=tok, key_handle=key.key_handle, iv=ct.iv,
                                                         ciphertext=ct.ciphertext, aad=b"ctx"))
        assert pt.plaintext == b"across nodes"
        info = await node.stub().GetKeyInfo(pb.KeyRequest(session_token=tok, key_handle=key.key_handle))
        assert info.label == "shared-k" and info.owner_username == "alice"


async def _has_key(node: NodeProcess, token: str, handle: int) -> bool:
    found = await node.stub().FindKeys(pb.FindKeysRequest(session_token=token))
    return handle in found.key_handles


async def test_killed_node_catches_up_on_everything_it_missed(cluster):
    n1, n2, n3 = cluster.nodes
    n3.kill()
    cu1 = await cluster.cu(n1)
    handles = []
    for i in range(40):
        k = await n1.stub().GenerateKey(pb.GenerateKeyRequest(session_token=cu1, key_size_bytes=32, label=f"while-down-{i}"))
        handles.append(k.key_handle)
    await n1.stub().DeleteKey(pb.KeyRequest(session_token=cu1, key_handle=handles.pop()))
    token = await co(n2.stub())
    await n2.stub().CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="bob",
                                                    password=CU_PASSWORD))
    ct = await n1.stub().Encrypt(pb.EncryptRequest(session_token=cu1, key_handle=handles[0], plaintext=b"made while down"))
    await n3.restart()
    await cluster.wait_converged()
    cu3 = await cluster.cu(n3)
    found = await n3.stub().FindKeys(pb.FindKeysRequest(session_token=cu3))
    assert set(handles) <= set(found.key_handles)
    pt = await n3.stub().Decrypt(pb.DecryptRequest(session_token=cu3, key_handle=handles[0], iv=ct.iv,
                                                   ciphertext=ct.ciphertext))
    assert pt.plaintext == b"made while down"
    users = await n3.stub().ListUsers(pb.Empty())
    assert "bob" in {u.username for u in users.users}


async def test_min_replicas_refused_with_one_node_alive_leaves_no_orphan(cluster):
    n1, n2, n3 = cluster.nodes
    cu1 = await cluster.cu(n1)
    n2.kill()
    n3.kill()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await n1.stub().GenerateKey(pb.GenerateKeyRequest(session_token=cu1, key_size_bytes=32, label="needs-two",
                                                          min_replicas=2, timeout_ms=1000))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "needs 2 nodes" in err.value.details()
    assert not (await n1.stub().FindKeys(pb.FindKeysRequest(session_token=cu1, label="needs-two"))).key_handles
    await asyncio.gather(n2.restart(), n3.restart())
    await cluster.wait_converged()
    for node in cluster.nodes:
        tok = await cluster.cu(node)
        assert not (await node.stub().FindKeys(pb.FindKeysRequest(session_token=tok, label="needs-two"))).key_handles


async def test_user_on_one_node_only_shows_in_the_hash_and_sync_user_repairs_it(cluster):
    n1, n2, n3 = cluster.nodes
    token = await co(n1.stub())
    await cluster.wait_converged()
    await n1.stub().CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="lonely",
                                                    password=CU_PASSWORD, this_node_only=True))
    on_n2 = {u.username for u in (await n2.stub().ListUsers(pb.Empty())).users}
    assert "lonely" not in on_n2
    s1, s2 = [await n.stub().GetStatus(pb.Empty()) for n in (n1, n2)]
    assert s1.consistency_hash != s2.consistency_hash
    synced = await n1.stub().SyncUser(pb.SyncUserRequest(session_token=token, username="lonely"))
    assert synced.members == 3 and synced.replicas >= 1  # peers that confirm later still converge below
    await cluster.wait_converged()
    assert "lonely" in {u.username for u in (await n3.stub().ListUsers(pb.Empty())).users}


async def test_concurrent_password_changes_resolve_the_same_everywhere(cluster):
    n1, n2, n3 = cluster.nodes
    t1, t2 = await co(n1.stub()), await co(n2.stub())
    await cluster.wait_converged()
    await asyncio.gather(
        n1.stub().ChangePassword(pb.ChangePasswordRequest(session_token=t1, user_type=pb.CU, username="bob",
                                                          new_password="from-node-1")),
        n2.stub().ChangePassword(pb.ChangePasswordRequest(session_token=t2, user_type=pb.CU, username="bob",
                                                          new_password="from-node-2")))
    await cluster.wait_converged()
    winners = set()
    for node in cluster.nodes:
        for pw in ("from-node-1", "from-node-2"):
            try:
                await login(node.stub(), pb.CU, "bob", pw)
                winners.add(pw)
            except grpc.aio.AioRpcError:
                pass
    assert len(winners) == 1  # the same password won on every node


async def test_node_added_from_backup_then_removed(cluster):
    n1 = cluster.nodes[0]
    cu1 = await cluster.cu(n1)
    key = await n1.stub().GenerateKey(pb.GenerateKeyRequest(session_token=cu1, key_size_bytes=16, label="before-add"))
    ct = await n1.stub().Encrypt(pb.EncryptRequest(session_token=cu1, key_handle=key.key_handle, plaintext=b"seed"))
    n4 = await cluster.lab.start_node()
    added = await join(cluster.lab, n1, n4)
    assert added.member.ordinal == 4 and added.backup_id.startswith("backup-")
    backup = await n1.stub().DescribeBackup(pb.BackupRequest(backup_id=added.backup_id))
    assert backup.trigger == "ADD_NODE"
    await cluster.wait_converged(cluster.nodes + [n4])
    cu4 = await cluster.cu(n4)
    pt = await n4.stub().Decrypt(pb.DecryptRequest(session_token=cu4, key_handle=key.key_handle, iv=ct.iv,
                                                   ciphertext=ct.ciphertext))
    assert pt.plaintext == b"seed"
    token = await co(n1.stub())
    status4 = await n4.stub().GetStatus(pb.Empty())
    removed = await n1.stub().RemoveNode(pb.RemoveNodeRequest(session_token=token, node_id=status4.node_id))
    assert (await n1.stub().DescribeBackup(pb.BackupRequest(backup_id=removed.backup_id))).trigger == "REMOVE_NODE"
    desc = await n1.stub().DescribeCluster(pb.Empty())
    assert status4.node_id not in {m.node_id for m in desc.members}
    await wait_until(lambda: _state_is(n4, pb.DELETED), what="removed node to know it")
    await n4.stop()


async def _state_is(node: NodeProcess, state: int) -> bool:
    return (await node.stub().GetStatus(pb.Empty())).state == state


async def test_backup_restores_into_a_new_related_cluster_that_decrypts_old_ciphertext(cluster):
    n1 = cluster.nodes[0]
    cu1 = await cluster.cu(n1)
    key = await n1.stub().GenerateKey(pb.GenerateKeyRequest(session_token=cu1, key_size_bytes=32, label="to-restore"))
    ct = await n1.stub().Encrypt(pb.EncryptRequest(session_token=cu1, key_handle=key.key_handle, plaintext=b"old data",
                                                   aad=b"a"))
    token = await co(n1.stub())
    backup = await n1.stub().CreateBackup(pb.CreateBackupRequest(session_token=token))
    assert backup.state == pb.BACKUP_READY and backup.trigger == "ON_DEMAND" and backup.key_count >= 1
    original = await n1.stub().DescribeCluster(pb.Empty())
    fresh = await cluster.lab.start_node()
    restored = await fresh.stub().RestoreCluster(pb.RestoreClusterRequest(backup_id=backup.backup_id))
    fresh.anchor_pem = cluster.lab.anchor.cert_pem
    await fresh.reset_channel()
    assert restored.cluster_id != original.cluster_id
    desc = await fresh.stub().DescribeCluster(pb.Empty())
    assert desc.cluster_certificate_sha256 == original.cluster_certificate_sha256
    assert desc.source_backup_id == backup.backup_id
    assert len(desc.members) == 1
    tok = await cluster.cu(fresh)
    pt = await fresh.stub().Decrypt(pb.DecryptRequest(session_token=tok, key_handle=key.key_handle, iv=ct.iv,
                                                      ciphertext=ct.ciphertext, aad=b"a"))
    assert pt.plaintext == b"old data"
    # The restored cluster is a separate replication domain: its writes do not reach the original.
    await fresh.stub().GenerateKey(pb.GenerateKeyRequest(session_token=tok, key_size_bytes=32, label="only-restored"))
    assert not (await n1.stub().FindKeys(pb.FindKeysRequest(session_token=cu1, label="only-restored"))).key_handles
    await fresh.stop()


async def test_backup_delete_restore_and_retention_rules(cluster):
    n1 = cluster.nodes[0]
    token = await co(n1.stub())
    backup = await n1.stub().CreateBackup(pb.CreateBackupRequest(session_token=token))
    deleted = await n1.stub().DeleteBackup(pb.BackupRequest(session_token=token, backup_id=backup.backup_id))
    assert deleted.state == pb.BACKUP_PENDING_DELETION
    assert deleted.delete_timestamp_ms - backup.create_timestamp_ms >= 7 * 86400 * 1000 - 60_000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await n1.stub().DeleteBackup(pb.BackupRequest(session_token=token, backup_id=backup.backup_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    restored = await n1.stub().RestoreBackup(pb.BackupRequest(session_token=token, backup_id=backup.backup_id))
    assert restored.state == pb.BACKUP_READY
    listed = await n1.stub().ListBackups(pb.ListBackupsRequest(cluster_id=backup.cluster_id))
    assert backup.backup_id in [b.backup_id for b in listed.backups]
    triggers = {b.trigger for b in listed.backups}
    assert {"ACTIVATION", "ADD_NODE", "ON_DEMAND"} <= triggers
    for bad in (6, 380):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await n1.stub().SetBackupRetention(pb.SetBackupRetentionRequest(session_token=token, days=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    desc = await n1.stub().SetBackupRetention(pb.SetBackupRetentionRequest(session_token=token, days=30))
    assert desc.backup_retention_days == 30
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await n1.stub().DescribeBackup(pb.BackupRequest(backup_id="backup-doesnotexist"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_peer_port_refuses_clients_without_a_cluster_certificate(cluster, tmp_path):
    n1 = cluster.nodes[0]
    anchor = cluster.lab.anchor.cert_pem.encode()
    # No client certificate at all: the TLS handshake fails.
    async with grpc.aio.secure_channel(n1.peer_endpoint, grpc.ssl_channel_credentials(anchor)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.HsmPeerStub(ch).Heartbeat(pb.HeartbeatRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # A certificate from another cluster (another trust anchor): refused by TLS.
    other_ca_key, other_ca = certs.make_trust_anchor("otherCA")
    foreign = await _client_cert(other_ca_key, other_ca)
    async with grpc.aio.secure_channel(n1.peer_endpoint, grpc.ssl_channel_credentials(anchor, *foreign)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.HsmPeerStub(ch).Heartbeat(pb.HeartbeatRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # Same trust anchor, but a cluster certificate that is not this cluster's: refused by the node.
    ca_key = certs.load_key(cluster.lab.anchor.key_path.read_bytes())
    same_anchor = await _client_cert(ca_key, certs.load_cert(cluster.lab.anchor.cert_pem))
    async with grpc.aio.secure_channel(n1.peer_endpoint, grpc.ssl_channel_credentials(anchor, *same_anchor)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.HsmPeerStub(ch).Replicate(pb.ReplicateRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _client_cert(ca_key, ca_cert) -> tuple[bytes, bytes]:
    cluster_key = certs.new_key()
    cluster_cert = certs.sign_cluster_csr(ca_key, ca_cert, certs.make_csr(cluster_key, "hsm-intruder"))
    node_key = certs.new_key()
    node_cert = certs.issue_node_cert(cluster_key, cluster_cert, node_key, "node-intruder", ["127.0.0.1"])
    return certs.key_pem(node_key), (certs.cert_pem(node_cert) + certs.cert_pem(cluster_cert)).encode()


async def test_backups_and_node_data_hold_no_key_material_in_clear(cluster):
    n1 = cluster.nodes[0]
    lab = cluster.lab
    token = await co(n1.stub())
    backup = await n1.stub().CreateBackup(pb.CreateBackupRequest(session_token=token))
    blob = BackupStore(lab.backup_dir).read_blob(backup.backup_id)
    contents = json.loads(open_backup(blob, base64.b64decode(lab.master_key),
                                      aad=backup_aad(backup.backup_id, backup.cluster_id)))
    secrets = [base64.b64decode(contents["domain_key"])]
    for item in contents["records"]:
        if item["kind"] == "key" and item["record"]:
            record = json.loads(base64.b64decode(item["record"]))
            secrets.append(base64.b64decode(record["material"]["b64"]))
    assert len(secrets) > 5
    for path in lab.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret not in data, f"key material in clear in {path}"
                assert base64.b64encode(secret) not in data, f"key material (base64) in {path}"
            assert CU_PASSWORD.encode() not in data, f"a password in clear in {path}"
