"""The typed HSM client against stand-in HSM nodes: real gRPC servers in-process that answer the
way hsm-node's servicer answers (its own error classes and trailing metadata), so the client's
reading of statuses into domain errors is tested over the wire."""
from __future__ import annotations

import itertools

import grpc
import pytest

from hsm_node.errors import HsmError, InsufficientReplicas, NotFound, StorageFailed, StorageFull
from kms_frontend.cluster.errors import HsmCallFailed, HsmStorageFull, NoHsmAvailable, TooFewReplicas
from kms_frontend.cluster.hsm_client import StoreHsmClient
from kms_frontend.cluster.kmsuser_sessions import Credential, KmsuserSessions, NodeSession
from protos.hsm.v1 import hsm_pb2 as hsm
from protos.hsm.v1 import hsm_pb2_grpc as hsm_grpc


class StandInNode(hsm_grpc.HsmServicer):
    """Answers GenerateKey with a key handle, or refuses with ``refusal`` as hsm-node does."""

    def __init__(self, refusal: HsmError | None = None, handle: int = 0) -> None:
        self.refusal, self.handle = refusal, handle
        self.calls = 0

    async def GenerateKey(self, request, context):  # noqa: N802 - gRPC method name
        self.calls += 1
        if self.refusal is not None:
            await context.abort(self.refusal.code, self.refusal.message,
                                trailing_metadata=self.refusal.trailing_metadata())
        return hsm.GenerateKeyResponse(key_handle=self.handle)


@pytest.fixture
async def cluster():
    servers, channels = [], []

    async def start(*nodes: StandInNode) -> StoreHsmClient:
        sessions = KmsuserSessions.__new__(KmsuserSessions)
        sessions.store_id, sessions.credential = "cks-1", Credential("pw")
        sessions._rr = itertools.count()
        sessions.nodes = {}
        for n, node in enumerate(nodes):
            server = grpc.aio.server()
            hsm_grpc.add_HsmServicer_to_server(node, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            servers.append(server)
            endpoint = f"127.0.0.1:{port}"
            channel = grpc.aio.insecure_channel(endpoint)
            channels.append(channel)
            sessions.nodes[endpoint] = NodeSession(endpoint, channel, hsm_grpc.HsmStub(channel), token=f"t{n}")
        return StoreHsmClient(sessions)

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


def too_few(confirmed: int) -> InsufficientReplicas:
    return InsufficientReplicas(f"key generation needs 2 nodes ... only {confirmed} did; the key was deleted again",
                                confirmed=confirmed, needed=2)


async def test_too_few_replicas_is_reported_with_the_count_not_as_no_hsm(cluster):
    # Every node is up and answers, but none can get the key confirmed on a second HSM. Before
    # the typed client, this UNAVAILABLE was retried on every node and then reported as
    # "0 active HSMs", as if nothing had answered.
    nodes = [StandInNode(too_few(1)), StandInNode(too_few(1))]
    client = await cluster(*nodes)
    with pytest.raises(TooFewReplicas) as caught:
        await client.generate_key("arn:key", size_bytes=32, min_replicas=2, timeout_ms=100)
    assert (caught.value.confirmed, caught.value.needed) == (1, 2)
    assert [n.calls for n in nodes] == [1, 1]


async def test_a_node_that_cannot_reach_its_peers_is_passed_over_for_one_that_can(cluster):
    client = await cluster(StandInNode(too_few(1)), StandInNode(handle=42))
    assert await client.generate_key("arn:key", size_bytes=32, min_replicas=2, timeout_ms=100) == 42


async def test_a_node_whose_storage_was_found_damaged_is_passed_over(cluster):
    damaged = StorageFailed("data directory /d is corrupted or was altered (...); restore the node from a backup")
    client = await cluster(StandInNode(damaged), StandInNode(handle=7))
    assert await client.generate_key("arn:key", size_bytes=32, min_replicas=2, timeout_ms=100) == 7


async def test_full_storage_everywhere_is_storage_full(cluster):
    client = await cluster(StandInNode(StorageFull("the HSM's storage is full")),
                           StandInNode(StorageFull("the HSM's storage is full")))
    with pytest.raises(HsmStorageFull):
        await client.generate_key("arn:key", size_bytes=32, min_replicas=2, timeout_ms=100)


async def test_a_refusal_that_no_other_node_would_change_is_not_retried(cluster):
    nodes = [StandInNode(NotFound("0xa8 : HSM Error: Invalid object handle")), StandInNode(handle=1)]
    client = await cluster(*nodes)
    with pytest.raises(HsmCallFailed) as caught:
        await client.generate_key("arn:key", size_bytes=32, min_replicas=2, timeout_ms=100)
    assert "Invalid object handle" in str(caught.value) and not caught.value.network
    assert sum(n.calls for n in nodes) == 1


async def test_no_session_anywhere_is_no_hsm_available(cluster):
    client = await cluster()
    with pytest.raises(NoHsmAvailable):
        await client.find_keys()
