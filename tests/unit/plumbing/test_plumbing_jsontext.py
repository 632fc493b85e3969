"""JSON from untrusted senders: nesting is bounded, and every failure is a ValueError."""
from __future__ import annotations

import json

import pytest

from plumbing.jsontext import JsonTooDeep, depth_exceeds, loads_bounded


def nested(depth: int, kind: str = "[") -> str:
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ["[", "{"])
def test_nesting_up_to_the_bound_parses_and_deeper_is_a_value_error(kind):
    assert loads_bounded(nested(64, kind)) == json.loads(nested(64, kind))
    with pytest.raises(JsonTooDeep, match="deeper than 64 levels"):
        loads_bounded(nested(65, kind))
    with pytest.raises(ValueError):  # beyond what json.loads itself can recurse into
        loads_bounded(nested(200_000, kind))
    with pytest.raises(ValueError):
        loads_bounded(nested(3, kind), max_depth=2)


def test_invalid_json_and_encodings_stay_value_errors():
    for text in (b"{", b"\xff\xfe\xfa", b'{"a": }', "nul", b'"\xc0\xaf"'):
        with pytest.raises(ValueError):
            loads_bounded(text)
    assert loads_bounded(b'{"a": ["\\ud800", 1e999]}') == {"a": ["\ud800", float("inf")]}


def test_depth_counts_containers_only():
    assert not depth_exceeds("x" * 10, 0)
    assert depth_exceeds([], 0) and not depth_exceeds([], 1)
    assert depth_exceeds({"a": [{"b": []}]}, 3) and not depth_exceeds({"a": [{"b": []}]}, 4)
