"""``host:port`` strings, parsed once and strictly, with errors that name the address and
what is wrong with it.

* an *endpoint* names a server to reach: a host is required (``10.0.0.5:2225``,
  ``[::1]:2225``), the port is 1..65535;
* a *listen* address names where to serve: an empty host means every interface
  (``:9100`` -> ``0.0.0.0``), the port is 0..65535 (0: any free port).
IPv6 hosts come without their brackets.
"""
from __future__ import annotations


def split_endpoint(endpoint: str, what: str = "endpoint") -> tuple[str, int]:
    """``host:port`` / ``[::1]:port`` -> (host, port). ``what`` names it in errors (``HSM endpoint``)."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{what} {endpoint!r} is not host:port")
    if not 0 < int(port) < 65536:
        raise ValueError(f"{what} {endpoint!r}: port {port} is out of range 1..65535")
    return host.strip("[]"), int(port)


def split_listen(address: str, option: str) -> tuple[str, int]:
    """``0.0.0.0:9100`` / ``[::]:9100`` / ``:9100`` -> (host, port). ``option`` is the flag that
    gave it (``--metrics-listen``), for the error."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{option} wants HOST:PORT, got {address!r}")
    if int(port) > 65535:
        raise ValueError(f"{option} {address!r}: port {port} is out of range 0..65535")
    return host.strip("[]") or "0.0.0.0", int(port)
