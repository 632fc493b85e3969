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


def test_secrets_are_made_once_and_each_share_holds_only_what_it_lists(tmp_path, capsys) -> None:
    main, hsm, frontend = tmp_path / "secrets", tmp_path / "hsm", tmp_path / "frontend"
    argv = ["secrets", str(main), f"--share={hsm}=hsm-master.key,appliance.key",
            f"--share={frontend}=frontend-master.key,aws-access-keys,appliance.key,supervisor.token"]
    with pytest.raises(SystemExit) as done:
        launcher.main(argv)
    assert done.value.code == 0
    assert sorted(p.name for p in main.iterdir()) == sorted(launcher.DEPLOYMENT_SECRETS)
    assert sorted(p.name for p in hsm.iterdir()) == ["appliance.key", "hsm-master.key"]
    assert sorted(p.name for p in frontend.iterdir()) == ["appliance.key", "aws-access-keys", "frontend-master.key",
                                                          "supervisor.token"]
    for path in [*main.iterdir(), *hsm.iterdir(), *frontend.iterdir()]:
        assert path.stat().st_mode & 0o077 == 0, path  # this user's only
    assert (hsm / "appliance.key").read_bytes() == (main / "appliance.key").read_bytes() == \
        (frontend / "appliance.key").read_bytes()
    before = {p: p.read_bytes() for p in main.iterdir()}
    (hsm / "hsm-master.key").write_bytes(b"stale\n")  # a share out of date is brought back in line
    with pytest.raises(SystemExit):
        launcher.main(argv)
    assert {p: p.read_bytes() for p in main.iterdir()} == before  # a second run keeps the secrets
    assert (hsm / "hsm-master.key").read_bytes() == before[main / "hsm-master.key"]
    out = capsys.readouterr().out
    assert "already present" in out and "(hsm-master.key updated)" in out
    assert not any(secret.decode(errors="replace").strip() in out for secret in before.values())


@pytest.mark.parametrize("text", ["/x", "=hsm-master.key", "/x=", "/x=hsm-master.key,root.pem"])
def test_a_bad_share_is_an_argument_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--share wants DIR=NAME"):
        launcher.parse_share(text)


def test_a_share_it_cannot_write_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(SystemExit) as done:
        launcher.main(["secrets", str(tmp_path / "secrets"), f"--share={blocked}=hsm-master.key"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kms-cluster secrets: cannot write {blocked}") and err.count("\n") == 1, err
