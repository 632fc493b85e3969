"""hsm-mgmt's pure parts: output formatting, env file, settings and sessions."""
from __future__ import annotations

from pathlib import Path

import pytest

from hsm_node.mgmt import cli, context
from hsm_node.mgmt import output as out
from protos.hsm.v1 import hsm_pb2 as pb


def test_table_pads_columns_and_right_aligns_numbers() -> None:
    lines = out.table(["User Id", "User Name"], [[1, "admin"], [1057, "kmsuser"]])
    assert lines == ["    User Id    User Name",
                     "          1    admin",
                     "       1057    kmsuser"]


def test_users_text_looks_like_cmu() -> None:
    users = [pb.User(user_id=1, user_type=pb.CO, username="admin"),
             pb.User(user_id=33, user_type=pb.CU, username="kmsuser", login_failure_count=5, locked=True)]
    text = out.users_text(out.Server(0, "127.0.0.1:2225"), users)
    assert text[:2] == ["Users on server 0(127.0.0.1:2225):", "Number of users found:2"]
    assert text[3].split() == ["User", "Id", "User", "Type", "User", "Name", "MofnPubKey", "LoginFailureCnt",
                               "2FA", "Locked"]
    assert text[5].split() == ["33", "CU", "kmsuser", "NO", "5", "NO", "YES"]


def test_message_dict_keeps_uint64_as_int_and_names_enums() -> None:
    d = out.message_dict(pb.NodeStatus(state=pb.ACTIVE, positions={"n1": 2**40}, node_id="n1"))
    assert d["state"] == "ACTIVE" and d["positions"] == {"n1": 2**40} and d["user_count"] == 0
    info = out.key_info_dict(pb.KeyInfo(key_handle=2**33, shared_user_ids=[4, 5]))
    assert info["key_handle"] == 2**33 and info["shared_user_ids"] == [4, 5]


def test_write_headline_and_holders() -> None:
    w = pb.WriteResult(replicas=2, members=3, node_ids=["a", "b"])
    assert out.write_headline("Creating User kmsuser(CU)", w).startswith(
        "Creating User kmsuser(CU) on 2 nodes (1 of 3 cluster members not confirmed yet")
    assert out.write_headline("Key 7 deleted", pb.WriteResult(replicas=1, members=1)) == "Key 7 deleted on 1 node"
    holders = [out.Holder(out.Server(0, "h:1"), "a", "c1"), out.Holder(out.Server(1, "h:2"), "c", "c1"),
               out.Holder(out.Server(2, "h:3"), "d", "c2"), out.Holder(out.Server(3, "h:4"), error="UNAVAILABLE: x")]
    lines = out.holder_lines("createUser", holders, w)
    assert lines[0] == "createUser success on server 0(h:1)"
    assert lines[1].startswith("createUser not confirmed yet on server 1(h:2)")
    assert lines[2] == "createUser not applied on server 2(h:3): it belongs to c2, not c1"
    assert lines[3] == "createUser status unknown on server 3(h:4): UNAVAILABLE: x"


def test_a_bad_env_file_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("HSM_JSON=1\nnot a pair\n")
    with pytest.raises(context.HsmMgmtError) as exc:
        context.environment({"HSM_ENV_FILE": str(f)})
    assert (exc.value.code, exc.value.message, exc.value.exit_code) == ("INVALID_ARGUMENT", f"{f}:2: expected KEY=VALUE", 2)


def test_real_environment_wins_over_env_file(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("HSM_ENDPOINTS=file:1\nHSM_USERNAME=fromfile\n")
    env = context.environment({"HSM_ENV_FILE": str(f), "HSM_ENDPOINTS": "real:2"})
    assert env["HSM_ENDPOINTS"] == "real:2" and env["HSM_USERNAME"] == "fromfile"
    with pytest.raises(context.HsmMgmtError, match=r"cannot read the environment file .*missing \(HSM_ENV_FILE\): No such file"):
        context.environment({"HSM_ENV_FILE": str(tmp_path / "missing")})


def test_settings_from_flags_and_environment() -> None:
    args = cli.build_parser().parse_args(["listUsers", "--json", "--endpoint", "h:1", "--endpoint", "h:2"])
    s = context.settings(args, {"HSM_ENDPOINTS": "ignored:1", "HSM_USER_TYPE": "cu", "HSM_RPC_TIMEOUT": "3"})
    assert s.endpoints == ["h:1", "h:2"] and s.json and s.user_type == "CU" and s.rpc_timeout == 3.0
    args = cli.build_parser().parse_args(["--user-type", "CO", "createUser", "CU", "kmsuser", "secretPassw1"])
    s = context.settings(args, {"HSM_ENDPOINTS": "x:1, y:2"})
    assert s.endpoints == ["x:1", "y:2"] and s.user_type == "CO" and args.user_type == "CU"
    assert args.password == "secretPassw1" and s.password is None
    s = context.settings(cli.build_parser().parse_args(["status"]), {})
    assert s.endpoints == [context.DEFAULT_ENDPOINT] and not s.json and s.trust_anchor is None


def test_values_starting_with_a_dash_are_kept() -> None:
    argv = cli.prepare_argv(["--session", "-6hyZ8R9", "findKey", "--password", "-pw12345"])
    assert argv == ["--session=-6hyZ8R9", "findKey", "--password=-pw12345"]
    args = cli.build_parser().parse_args(argv)
    assert args.session == "-6hyZ8R9" and args.login_password == "-pw12345"


def test_session_tokens() -> None:
    assert context.parse_sessions("tok") == ("tok", {})
    assert context.parse_sessions("a:1=t1,b:2=t2") == ("", {"a:1": "t1", "b:2": "t2"})
    with pytest.raises(context.HsmMgmtError):
        context.parse_sessions("a:1=,b")


def test_credentials_prefer_per_type_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    env = {"HSM_CO_PASSWORD": "coPassword1", "HSM_CU_USERNAME": "alice", "HSM_PASSWORD": "generic1"}
    c = context.Cli(context.settings(cli.build_parser().parse_args(["listUsers"]), env))
    assert c.credentials("CO") == ("CO", "admin", "coPassword1")
    assert c.credentials("CU") == ("CU", "alice", "generic1")
    assert c.credentials("PRECO") == ("PRECO", "admin", "generic1")
    bare = context.Cli(context.settings(cli.build_parser().parse_args(["listUsers"]), {}))
    with pytest.raises(context.HsmMgmtError, match="no password"):
        bare.credentials("CU")
    assert bare.credentials("PRECO") == ("PRECO", "admin", "password")
