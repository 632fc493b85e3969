"""hsm-supervisor's HTTP API, as a caller without the token or with a malformed body meets it: a
clear 4xx in JSON, never a 500, and Docker is never asked (in-process, no engine)."""
from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from kms_frontend.controlplane.supervisor import Supervisor

TOKEN = "t0ken-for-the-test"


class NoDocker:
    name = "docker"

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        async def asked(*args: object) -> None:
            raise AssertionError(f"Docker was asked to {name}")
        return asked


async def test_no_token_malformed_bodies_and_bad_ids_are_refused_without_reaching_docker():
    supervisor = Supervisor("127.0.0.1:0", TOKEN, NoDocker())  # type: ignore[arg-type]
    async with TestClient(TestServer(supervisor.app)) as client:
        r = await client.post("/hsms", json={"hsm_id": "hsm-abcdefghijk"})
        assert r.status == 401 and "token" in (await r.json())["error"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for body in (b"{not json", b"[1, 2]", b'"a string"', b"\xff\xfe"):
            for path in ("/hsms", "/hsms/hsm-abcdefghijk/ensure"):
                r = await client.post(path, data=body, headers={**auth, "Content-Type": "application/json"})
                assert r.status == 400, (path, body, r.status)
                assert "JSON object" in (await r.json())["error"]
        r = await client.post("/hsms", json={"hsm_id": "../../etc", "cluster_id": "cluster-abcdefghijk"}, headers=auth)
        assert r.status == 409 and "bad HSM or cluster id" in (await r.json())["error"]
        r = await client.delete("/hsms/not-an-hsm", headers=auth)
        assert r.status == 409
        assert (await client.get("/healthz")).status == 200
