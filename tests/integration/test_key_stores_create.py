"""CreateCustomKeyStore preconditions and error catalogue, input validation, idempotent
create, and DescribeCustomKeyStores (by id, by name, all, paging) (AWS KMS API Reference:
CreateCustomKeyStore, DescribeCustomKeyStores).

Processes: cluster C1 (two nodes, lab A) and cluster U (lab B: another trust anchor),
which starts with one active HSM and gets a second one later; one frontend.

The 10-store quota is tested in process against the service layer with a fake cluster
directory: ten real stores need ten clusters with distinct cluster certificates and two
active HSMs each (twenty node processes), since stores on related clusters are refused
with CloudHsmClusterInUseException before the quota is ever reached.
"""
from __future__ import annotations

import os

import pytest

from hsm_node import certs
from hsm_node.mgmt import provision
from kms_frontend import errors
from kms_frontend.cluster.directory import ClusterInfo
from kms_frontend.secret_box import SecretBox
from kms_frontend.service.context import Context, FrontendSettings
from kms_frontend.service.key_stores import MAX_STORES, KeyStores
from kms_frontend.store.sqlite import SqliteRepository
from protos.hsm.v1 import hsm_pb2 as pb
from protos.kms.v1 import kms_pb2 as kms
from tests.harness import CU_PASSWORD, Lab, NodeProcess

from .test_key_stores_kit import (
    UNKNOWN_CLUSTER,
    HsmCluster,
    Kms,
    add_node,
    aws_error,
    make_cluster,
    start_frontend,
)

VALIDATION = "ValidationException"


class Env:
    c1: HsmCluster
    u: HsmCluster
    inactive: NodeProcess
    kms: Kms


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("key-store-create")
    e = Env()
    e.c1 = await make_cluster(Lab(root / "a"), 2)
    e.u = await make_cluster(Lab(root / "b"), 1, kmsuser=False)
    # A cluster initialised but never activated (its PRECO still has the default password).
    e.inactive = await e.c1.lab.start_node()
    await provision.initialize(e.inactive.stub(), e.c1.lab.anchor)
    e.inactive.anchor_pem = e.c1.anchor
    await e.inactive.reset_channel()
    fe = await start_frontend(root, e.c1.endpoints + e.u.endpoints + [e.inactive.endpoint])
    e.kms = Kms(fe)
    yield e
    await fe.stop()
    await e.c1.close()
    await e.u.close()
    await e.inactive.stop()


async def all_stores(k: Kms, **kw) -> kms.DescribeCustomKeyStoresResponse:
    return await k.stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(**kw), timeout=10)


async def test_invalid_input_is_a_validation_exception(env):
    k, c1 = env.kms, env.c1
    cid, anchor = c1.cluster_id, c1.anchor
    message = await aws_error(k.create_call("n" * 257, cid, anchor), VALIDATION)
    assert "customKeyStoreName" in message and "256" in message
    message = await aws_error(k.create_call("", cid, anchor), VALIDATION)
    assert "customKeyStoreName" in message
    for bad in ("cluster-1", "cluster-0000000000000", "hsm-abcdefghijklmnop", "cluster-abcdefghijklmnopq"):
        message = await aws_error(k.create_call("v", bad, anchor), VALIDATION)
        assert "cloudHsmClusterId" in message, message
    message = await aws_error(k.create_call("v", cid, anchor, password="short1"), VALIDATION)
    assert "keyStorePassword" in message and "7" in message
    assert "short1" not in message  # a password is never echoed
    await aws_error(k.create_call("v", cid, anchor, password="p" * 33), VALIDATION)
    message = await aws_error(k.create_call("v", cid, ""), VALIDATION)
    assert "trustAnchorCertificate" in message
    message = await aws_error(k.create_call("v", "cluster-1111111111111", anchor, password="short1"), VALIDATION)
    assert message.startswith("2 validation errors detected: ")
    # Describe and update validate too.
    for limit in (0, 1001):
        message = await aws_error(all_stores(k, limit=limit), VALIDATION)
        assert "limit" in message
    await aws_error(all_stores(k, custom_key_store_id="cks-1", custom_key_store_name="x"), VALIDATION)
    await aws_error(k.update("cks-1", name="n" * 257), VALIDATION)
    await aws_error(k.update("cks-1", password="short1"), VALIDATION)
    await aws_error(k.update("cks-1", cluster_id="cluster-1"), VALIDATION)
    # Nothing was created.
    assert not (await all_stores(k)).custom_key_stores


async def test_unknown_cluster(env):
    message = await aws_error(env.kms.create_call("x", UNKNOWN_CLUSTER, env.c1.anchor),
                              "CloudHsmClusterNotFoundException")
    assert UNKNOWN_CLUSTER in message


async def test_cluster_not_active(env):
    status = await env.inactive.stub().GetStatus(pb.Empty())
    assert status.state == pb.INITIALIZED
    message = await aws_error(env.kms.create_call("x", status.cluster_id, env.c1.anchor),
                              "CloudHsmClusterNotActiveException")
    assert status.cluster_id in message and "INITIALIZED" in message and "activate" in message


async def test_trust_anchor_of_another_cluster(env):
    k, c1, u = env.kms, env.c1, env.u
    message = await aws_error(k.create_call("x", c1.cluster_id, u.anchor), "IncorrectTrustAnchorException")
    assert c1.cluster_id in message and "customerCA.crt" in message
    await aws_error(k.create_call("x", c1.cluster_id, "not a certificate"), "IncorrectTrustAnchorException")
    await aws_error(k.create_call("x", u.cluster_id, c1.anchor), "IncorrectTrustAnchorException")


async def test_one_active_hsm_is_not_enough(env):
    u = env.u
    message = await aws_error(env.kms.create_call("x", u.cluster_id, u.anchor),
                              "CloudHsmClusterInvalidConfigurationException")
    assert u.cluster_id in message and "1 active HSM" in message and "at least two active HSMs, each in a different Availability Zone" in message
    assert not (await all_stores(env.kms)).custom_key_stores


async def test_create_is_idempotent_only_for_a_disconnected_identical_store(env):
    k, c1, u = env.kms, env.c1, env.u
    sid = await k.create("alpha", c1.cluster_id, c1.anchor)
    assert (await k.describe(sid)).connection_state == "DISCONNECTED"
    # The same request again: the same store.
    assert await k.create("alpha", c1.cluster_id, c1.anchor) == sid
    assert [s.custom_key_store_id for s in (await all_stores(k)).custom_key_stores] == [sid]
    # Same name, any other property different: the name is taken.
    message = await aws_error(k.create_call("alpha", c1.cluster_id, c1.anchor, password="otherPassword1"),
                              "CustomKeyStoreNameInUseException")
    assert "'alpha'" in message
    await aws_error(k.create_call("alpha", u.cluster_id, u.anchor), "CustomKeyStoreNameInUseException")
    # Another name on the same cluster: the cluster is taken.
    message = await aws_error(k.create_call("beta", c1.cluster_id, c1.anchor), "CloudHsmClusterInUseException")
    assert c1.cluster_id in message and sid in message
    # Identical properties but the store is not DISCONNECTED (here FAILED): the name is taken.
    await k.update(sid, password="notThePassword1")
    await k.failed_with(sid, "INVALID_CREDENTIALS")
    await aws_error(k.create_call("alpha", c1.cluster_id, c1.anchor, password="notThePassword1"),
                    "CustomKeyStoreNameInUseException")
    await k.disconnected(sid)
    assert await k.create("alpha", c1.cluster_id, c1.anchor, password="notThePassword1") == sid
    await k.update(sid, password=CU_PASSWORD)
    assert len((await all_stores(k)).custom_key_stores) == 1


async def test_describe_by_id_name_all_and_paging(env):
    k, u = env.kms, env.u
    (alpha,) = (await all_stores(k)).custom_key_stores
    # U gets its second HSM: now it can back a store.
    u.nodes.append(await add_node(u.lab, u.nodes[0]))
    await u.wait_healthy()
    gamma = await k.create("gamma", u.cluster_id, u.anchor)
    listed = await all_stores(k)
    assert [s.custom_key_store_id for s in listed.custom_key_stores] == [alpha.custom_key_store_id, gamma]
    assert not listed.truncated and not listed.HasField("next_marker")
    # Paging.
    first = await all_stores(k, limit=1)
    assert len(first.custom_key_stores) == 1 and first.truncated and first.next_marker
    second = await all_stores(k, limit=1, marker=first.next_marker)
    assert len(second.custom_key_stores) == 1 and not second.truncated
    assert [first.custom_key_stores[0].custom_key_store_id, second.custom_key_stores[0].custom_key_store_id] == \
        [alpha.custom_key_store_id, gamma]
    message = await aws_error(all_stores(k, marker="not-a-marker"), "InvalidMarkerException")
    assert "marker" in message
    # By name and by id.
    by_name = await all_stores(k, custom_key_store_name="gamma")
    assert [s.custom_key_store_id for s in by_name.custom_key_stores] == [gamma]
    entry = await k.describe(gamma)
    assert (entry.custom_key_store_name, entry.cloud_hsm_cluster_id, entry.connection_state) == \
        ("gamma", u.cluster_id, "DISCONNECTED")
    assert entry.trust_anchor_certificate.strip() == u.anchor.strip()
    message = await aws_error(k.describe("cks-00000000000000000"), "CustomKeyStoreNotFoundException")
    assert "cks-00000000000000000" in message and "DescribeCustomKeyStores" in message
    message = await aws_error(all_stores(k, custom_key_store_name="nope"), "CustomKeyStoreNotFoundException")
    assert "'nope'" in message
    # Names stay unique on update; a cluster must exist to be switched to.
    await aws_error(k.update(gamma, name="alpha"), "CustomKeyStoreNameInUseException")
    message = await aws_error(k.update(gamma, cluster_id=UNKNOWN_CLUSTER), "CloudHsmClusterNotFoundException")
    assert UNKNOWN_CLUSTER in message
    await k.update(gamma, name="gamma")  # its own name: fine
    await k.delete(gamma)
    assert [s.custom_key_store_id for s in (await all_stores(k)).custom_key_stores] == [alpha.custom_key_store_id]
    await aws_error(all_stores(k, custom_key_store_name="gamma"), "CustomKeyStoreNotFoundException")


# ---------------------------------------------------------------- the quota, in process


class FakeDirectory:
    """Clusters that exist only here: ACTIVE, two HSMs, each with its own cluster certificate."""

    def __init__(self) -> None:
        self.ca_key, self.ca_cert = certs.make_trust_anchor()
        self.anchor = certs.cert_pem(self.ca_cert)
        self.clusters: dict[str, ClusterInfo] = {}

    def add(self) -> str:
        cid = certs.random_id("cluster-")
        pem = certs.cert_pem(certs.sign_cluster_csr(self.ca_key, self.ca_cert, certs.make_csr(certs.new_key(), cid)))
        self.clusters[cid] = ClusterInfo(cid, "ACTIVE", pem, certs.fingerprint(pem), self.anchor,
                                         ["127.0.0.1:1", "127.0.0.1:2"], ["127.0.0.1:1", "127.0.0.1:2"])
        return cid

    async def lookup(self, cluster_id: str, *, max_age_s: float = 0.5) -> ClusterInfo | None:
        return self.clusters.get(cluster_id)


async def test_at_most_ten_stores_in_any_state(tmp_path):
    ctx = Context(SqliteRepository(tmp_path / "metadata.db"), SecretBox(os.urandom(32)), FrontendSettings())
    directory = FakeDirectory()
    stores = KeyStores(ctx, directory, connections=None)  # type: ignore[arg-type]
    try:
        ids = [await stores.create(f"store-{i}", directory.add(), directory.anchor, CU_PASSWORD)
               for i in range(MAX_STORES)]
        assert MAX_STORES == 10 and len(set(ids)) == 10
        # The quota counts stores whatever their connection state.
        for sid, state in zip(ids, ("CONNECTED", "FAILED", "CONNECTING", "DISCONNECTING"), strict=False):
            await ctx.update_store(sid, connection_state=state)
        with pytest.raises(errors.LimitExceededException) as err:
            await stores.create("store-10", directory.add(), directory.anchor, CU_PASSWORD)
        assert "10 custom key stores" in err.value.message and "Delete" in err.value.message
        # An identical retry of an existing store is not a new store.
        cluster_9 = (await stores.get(ids[9])).cloud_hsm_cluster_id
        assert await stores.create("store-9", cluster_9, directory.anchor, CU_PASSWORD) == ids[9]
        # Paging over all of them.
        seen, marker = [], None
        while True:
            page = await stores.describe(limit=4, marker=marker)
            seen += [s.custom_key_store_id for s in page.items]
            if not page.truncated:
                break
            marker = page.next_marker
        assert seen == ids
        # Deleting one makes room.
        await stores.delete(ids[9])
        assert await stores.create("store-10", directory.add(), directory.anchor, CU_PASSWORD)
    finally:
        ctx.close()
