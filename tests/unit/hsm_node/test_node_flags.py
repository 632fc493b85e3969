"""hsm-node's limit of keys (CloudHSM's 3,300 keys per cluster): flag, environment, default."""
from __future__ import annotations

import pytest

from hsm_node.errors import DEFAULT_MAX_KEYS
from hsm_node.server import build_config, parse_args


def test_the_key_limit_defaults_to_cloudhsms_and_can_be_lifted(monkeypatch) -> None:
    monkeypatch.delenv("HSM_MAX_KEYS", raising=False)
    assert DEFAULT_MAX_KEYS == 3300
    assert parse_args([]).max_keys == 3300
    assert parse_args(["--max-keys", "0"]).max_keys == 0
    monkeypatch.setenv("HSM_MAX_KEYS", "200000")
    assert parse_args([]).max_keys == 200000
    assert parse_args(["--max-keys", "10"]).max_keys == 10  # the flag wins over the environment


def test_a_negative_key_limit_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="--max-keys must be 0"):
        build_config(parse_args(["--max-keys", "-1"]))
