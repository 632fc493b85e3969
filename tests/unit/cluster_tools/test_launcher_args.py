"""kms-cluster's argument parsing (cluster_tools/launcher.py): node specs and the frontend address."""
from __future__ import annotations

import argparse

import pytest

from cluster_tools import launcher


def test_frontend_endpoint_keeps_ipv6_brackets_for_the_address_it_rebuilds() -> None:
    assert launcher.frontend_endpoint("frontend:7800") == ("frontend", 7800)
    assert launcher.frontend_endpoint("[::1]:7800") == ("[::1]", 7800)


@pytest.mark.parametrize("text, message", [
    ("frontend", "--frontend 'frontend' is not host:port"),
    ("frontend:99999", "--frontend 'frontend:99999': port 99999 is out of range 1..65535"),
])
def test_a_bad_frontend_address_is_an_argument_error(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        launcher.frontend_endpoint(text)


def test_node_specs() -> None:
    n = launcher.parse_node("hsm1=hsm1:2225:2226")
    assert (n.name, n.host, n.port, n.peer_port, n.endpoint) == ("hsm1", "hsm1", 2225, 2226, "hsm1:2225")
    assert launcher.parse_node("10.0.0.5:1:2").name == "10.0.0.5"
    with pytest.raises(argparse.ArgumentTypeError, match="expected \\[name=\\]host:port:peer-port"):
        launcher.parse_node("hsm1:2225")
