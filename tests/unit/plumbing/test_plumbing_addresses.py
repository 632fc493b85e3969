"""host:port parsing (plumbing/addresses.py): one strict parser, errors that say what is wrong."""
from __future__ import annotations

import pytest

from plumbing.addresses import split_endpoint, split_listen


@pytest.mark.parametrize("endpoint, expected", [
    ("127.0.0.1:2225", ("127.0.0.1", 2225)), ("[::1]:2225", ("::1", 2225)), ("hsm1:1", ("hsm1", 1)),
    ("node.example:65535", ("node.example", 65535)),
])
def test_endpoints(endpoint, expected):
    assert split_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["127.0.0.1", ":2225", "host:", "host:http", "host:-1", ""])
def test_an_endpoint_needs_a_host_and_a_numeric_port(endpoint):
    with pytest.raises(ValueError, match=r"is not host:port"):
        split_endpoint(endpoint)


@pytest.mark.parametrize("endpoint, port", [("host:0", "0"), ("host:65536", "65536"), ("host:99999", "99999")])
def test_an_endpoint_port_must_be_in_range(endpoint, port):
    with pytest.raises(ValueError) as exc:
        split_endpoint(endpoint, "HSM endpoint")
    assert str(exc.value) == f"HSM endpoint {endpoint!r}: port {port} is out of range 1..65535"


def test_errors_name_what_the_address_is():
    with pytest.raises(ValueError, match=r"^HSM endpoint 'nope' is not host:port$"):
        split_endpoint("nope", "HSM endpoint")


@pytest.mark.parametrize("address, expected", [
    ("0.0.0.0:9100", ("0.0.0.0", 9100)), (":9100", ("0.0.0.0", 9100)), ("[::1]:9100", ("::1", 9100)),
    ("[::]:9100", ("::", 9100)), ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_listen_addresses(address, expected):
    assert split_listen(address, "--metrics-listen") == expected


@pytest.mark.parametrize("address", ["localhost", "localhost:", "host:port", ""])
def test_a_listen_address_needs_a_port(address):
    with pytest.raises(ValueError, match=r"^--metrics-listen wants HOST:PORT, got "):
        split_listen(address, "--metrics-listen")


def test_a_listen_port_must_be_in_range():
    with pytest.raises(ValueError, match=r"^--aws-listen ':70000': port 70000 is out of range 0\.\.65535$"):
        split_listen(":70000", "--aws-listen")
