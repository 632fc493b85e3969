"""The frontend's request ids, request counting and the Prometheus scrape configuration."""
from __future__ import annotations

import uuid
from pathlib import Path

from prometheus_client import REGISTRY

from kms_frontend import observability as obs
from kms_frontend.errors import NotFoundException, internal

ROOT = Path(__file__).resolve().parents[3]


def test_request_id_is_the_callers_when_sane_else_a_uuid4():
    assert obs.new_request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in (None, "", "has space", "x" * 129, "new\nline", "quote\"", "é"):
        made = obs.new_request_id(bad)
        assert str(uuid.UUID(made)) == made and uuid.UUID(made).version == 4


def test_outcome_is_ok_or_the_aws_exception_name():
    assert obs.outcome_of(None) == "ok"
    assert obs.outcome_of(NotFoundException("gone")) == "NotFoundException"
    assert obs.outcome_of(internal("boom")) == "KMSInternalException"
    assert obs.outcome_of(RuntimeError("x")) == "KMSInternalException"


def test_finish_counts_and_times_one_request():
    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("kms_requests_total", {"operation": "UnitOp", "outcome": outcome}) or 0.0

    timed = REGISTRY.get_sample_value("kms_request_seconds_count", {"operation": "UnitOp"}) or 0.0
    obs.finish("grpc", "UnitOp", "ok", 0.003, "rid-1")
    obs.finish("aws", "UnitOp", "NotFoundException", 0.001, "rid-2")
    obs.finish("aws", "UnitOp", "ok", 0.002, "rid-3")
    assert count("ok") == 2 and count("NotFoundException") == 1
    assert REGISTRY.get_sample_value("kms_request_seconds_count", {"operation": "UnitOp"}) == timed + 3


def test_prometheus_scrape_config_names_the_compose_services():
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    assert 'targets: ["frontend:9100"]' in text
    assert 'targets: ["hsm1:9100", "hsm2:9100", "hsm3:9100"]' in text
    try:
        import yaml
    except ImportError:  # not a dependency; the text checks above still hold
        return
    doc = yaml.safe_load(text)
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in doc["scrape_configs"]}
    assert targets == {"kms-frontend": ["frontend:9100"], "hsm-node": ["hsm1:9100", "hsm2:9100", "hsm3:9100"]}
