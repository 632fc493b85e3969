"""Samples of every HSM node during a run, for the report: its state (or that it does not answer)
and how many writes it misses compared with the most advanced node (its replication lag), once a
second, from each node's own status. Recorded in the history as ``node`` records."""
from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from hsm_node import client as hsm_client
from protos.hsm.v1 import hsm_pb2 as pb

from .. import history as hist

UNREACHABLE = "unreachable"


class NodeSampler:
    def __init__(self, endpoints: dict[str, str], trust_anchor_pem: bytes, history: hist.History,
                 interval_s: float = 1.0, timeout_s: float = 0.5) -> None:
        self.endpoints, self.anchor, self.history = endpoints, trust_anchor_pem, history
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def _status(self, node: str) -> pb.NodeStatus | None:
        ch = self._channels.get(node)
        if ch is None:
            ch = self._channels[node] = hsm_client.channel(self.endpoints[node], self.anchor)
        try:
            return await hsm_client.stub(ch).GetStatus(pb.Empty(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError:
            # A fresh channel next time: a failed one waits out gRPC's reconnect backoff, and a node
            # that came back would be reported unreachable for seconds more than it was.
            self._channels.pop(node, None)
            with contextlib.suppress(Exception):
                await ch.close()
            return None

    async def sample_once(self) -> None:
        at = time.time()
        names = list(self.endpoints)
        statuses = dict(zip(names, await asyncio.gather(*(self._status(n) for n in names)), strict=True))
        newest: dict[str, int] = {}
        for st in statuses.values():
            for origin, seq in (st.positions if st is not None else {}).items():
                newest[origin] = max(newest.get(origin, 0), seq)
        for node, st in statuses.items():
            if st is None:
                self.history.write({"type": "node", "at": at, "node": node, "state": UNREACHABLE})
                continue
            lag = sum(seq - st.positions.get(origin, 0) for origin, seq in newest.items())
            self.history.write({"type": "node", "at": at, "node": node, "state": pb.NodeState.Name(st.state),
                                "lag": lag})

    async def run(self) -> None:
        """Sample until cancelled."""
        try:
            while True:
                started = time.monotonic()
                await self.sample_once()
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            for ch in self._channels.values():
                with contextlib.suppress(Exception):
                    await ch.close()
