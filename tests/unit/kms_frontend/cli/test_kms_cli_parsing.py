"""The ``kms`` CLI's pure parts: parameter values as the AWS CLI v2 reads them (file://, fileb://,
base64 blobs, shorthand maps and tags), request building, output shapes, --query, env file, errors."""
from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import pytest

from kms_frontend.cli import args as ca
from kms_frontend.cli import client as kms_client
from kms_frontend.cli import commands, output, settings
from kms_frontend.cli import main as cli
from kms_frontend.cli.args import KmsCliError
from protos.kms.v1 import kms_pb2 as pb


def parse(*argv: str) -> argparse.Namespace:
    args, extras = cli.build_parser().parse_known_args(cli.prepare_argv(list(argv)))
    assert extras == []
    return args


def request(*argv: str, binary_format: str = "base64"):
    args = parse(*argv)
    return commands.build_request(commands.COMMANDS_BY_NAME[args.command], args, binary_format)


# ---------------------------------------------------------------- file:// and fileb://


def test_file_gives_text_and_fileb_gives_bytes(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("héllo\n")
    (tmp_path / "b.bin").write_bytes(b"\x00\xff\x10")
    assert ca.load_paramfile("--x", f"file://{tmp_path}/t.txt") == "héllo\n"
    assert ca.load_paramfile("--x", f"fileb://{tmp_path}/b.bin") == b"\x00\xff\x10"
    assert ca.load_paramfile("--x", "plain value") == "plain value"


def test_paramfile_expands_home_and_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.json").write_text("{}")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KMS_TEST_DIR", str(tmp_path))
    assert ca.load_paramfile("--policy", "file://~/p.json") == "{}"
    assert ca.load_paramfile("--policy", "file://$KMS_TEST_DIR/p.json") == "{}"


def test_missing_paramfile_is_a_usage_error_worded_like_the_aws_cli(tmp_path: Path) -> None:
    with pytest.raises(KmsCliError) as e:
        ca.load_paramfile("--plaintext", f"fileb://{tmp_path}/nope.bin")
    assert e.value.exit_code == 252
    assert e.value.message.startswith(f"Error parsing parameter '--plaintext': Unable to load paramfile "
                                      f"fileb://{tmp_path}/nope.bin: [Errno 2] No such file or directory")


def test_binary_file_through_file_prefix_says_to_use_fileb(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(KmsCliError) as e:
        ca.load_paramfile("--policy", f"file://{tmp_path}/b.bin")
    assert "please use the fileb:// prefix" in e.value.message and e.value.exit_code == 252


def test_trust_anchor_from_file_is_the_pem_text(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (tmp_path / "customerCA.crt").write_text(pem)
    r = request("create-custom-key-store", "--custom-key-store-name", "s", "--cloud-hsm-cluster-id",
                "cluster-234567abcdefg", "--trust-anchor-certificate", f"file://{tmp_path}/customerCA.crt",
                "--key-store-password", "kmsPassword1")
    assert r == pb.CreateCustomKeyStoreRequest(custom_key_store_name="s", cloud_hsm_cluster_id="cluster-234567abcdefg",
                                               trust_anchor_certificate=pem, key_store_password="kmsPassword1")
    assert not r.HasField("custom_key_store_type")


# ---------------------------------------------------------------- blobs (AWS CLI v2: base64 by default)


def test_blob_from_fileb_is_raw_bytes(tmp_path: Path) -> None:
    data = bytes(range(256))
    (tmp_path / "d.bin").write_bytes(data)
    assert ca.blob_value("--plaintext", f"fileb://{tmp_path}/d.bin") == data
    # the binary format does not matter for fileb://
    assert ca.blob_value("--plaintext", f"fileb://{tmp_path}/d.bin", "raw-in-base64-out") == data


def test_blob_text_is_base64_unless_raw_in_base64_out() -> None:
    assert ca.blob_value("--plaintext", "aGVsbG8=") == b"hello"
    assert ca.blob_value("--plaintext", "aGVsbG8=", "raw-in-base64-out") == b"aGVsbG8="
    assert ca.blob_value("--plaintext", "hello world", "raw-in-base64-out") == b"hello world"


def test_blob_text_that_is_not_base64_is_refused_like_the_aws_cli() -> None:
    for bad in ("hello", "aGVsbG8", "a b=", "aGVs*G8="):
        with pytest.raises(KmsCliError) as e:
            ca.blob_value("--plaintext", bad)
        assert e.value.message == f'Invalid base64: "{bad}"' and e.value.exit_code == 252


def test_blob_from_file_prefix_is_text_then_base64(tmp_path: Path) -> None:
    (tmp_path / "b64.txt").write_text(base64.b64encode(b"\x01\x02").decode())
    assert ca.blob_value("--ciphertext-blob", f"file://{tmp_path}/b64.txt") == b"\x01\x02"


def test_encrypt_request_from_fileb_and_context(tmp_path: Path) -> None:
    (tmp_path / "in.bin").write_bytes(b"\x00secret\xff")
    r = request("encrypt", "--key-id", "alias/app", "--plaintext", f"fileb://{tmp_path}/in.bin",
                "--encryption-context", "purpose=test,dept=IT")
    assert r.key_id == "alias/app" and r.plaintext == b"\x00secret\xff"
    assert dict(r.encryption_context) == {"purpose": "test", "dept": "IT"}
    assert not r.HasField("encryption_algorithm") and not r.dry_run


def test_raw_in_base64_out_applies_to_text_plaintext() -> None:
    r = request("encrypt", "--key-id", "k", "--plaintext", "hello", binary_format="raw-in-base64-out")
    assert r.plaintext == b"hello"


# ---------------------------------------------------------------- maps: encryption context


def test_context_shorthand_quotes_and_spaces() -> None:
    assert ca.map_value("--encryption-context", "a=1, b = two ,c='x,y',d=\"p=q\",e=") == \
        {"a": "1", "b": "two", "c": "x,y", "d": "p=q", "e": ""}
    assert ca.map_value("--encryption-context", "k=v=w") == {"k": "v=w"}


def test_context_json_and_json_file(tmp_path: Path) -> None:
    assert ca.map_value("--encryption-context", '{"Department": "IT", "x": "é"}') == {"Department": "IT", "x": "é"}
    (tmp_path / "ctx.json").write_text('{"a": "b"}')
    assert ca.map_value("--encryption-context", f"file://{tmp_path}/ctx.json") == {"a": "b"}


@pytest.mark.parametrize("value, fragment", [
    ("novalue", "Expected: '='"),
    ("a=b,c", "Expected: '='"),
    ("a=b,c,d=e", "quote values that contain commas"),
    ("a='b", "Expected: '"),
    ('{"a": 1}', "Invalid type for parameter EncryptionContext.a"),
    ('{"a": ', "Invalid JSON"),
    ('["a"]', "expected a JSON object"),
])
def test_context_errors_are_usage_errors(value: str, fragment: str) -> None:
    with pytest.raises(KmsCliError) as e:
        ca.map_value("--encryption-context", value)
    assert fragment in e.value.message and e.value.exit_code == 252


def test_re_encrypt_takes_both_contexts() -> None:
    r = request("re-encrypt", "--ciphertext-blob", "AQID", "--source-encryption-context", "a=b",
                "--destination-key-id", "k2", "--destination-encryption-context", '{"c": "d"}')
    assert r.ciphertext_blob == b"\x01\x02\x03"
    assert dict(r.source_encryption_context) == {"a": "b"} and dict(r.destination_encryption_context) == {"c": "d"}


# ---------------------------------------------------------------- tags and lists


def test_tags_shorthand_one_per_argument() -> None:
    r = request("create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", "cks-1", "--tags",
                "TagKey=Purpose,TagValue=Test", "TagKey=Empty,TagValue=", "TagKey=c,TagValue='a,b'")
    assert [(t.tag_key, t.tag_value) for t in r.tags] == [("Purpose", "Test"), ("Empty", ""), ("c", "a,b")]


def test_tags_json_list(tmp_path: Path) -> None:
    doc = '[{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}]'
    assert ca.tags_value("--tags", [doc]) == [("a", "1"), ("b", "2")]
    (tmp_path / "tags.json").write_text(doc)
    assert ca.tags_value("--tags", [f"file://{tmp_path}/tags.json"]) == [("a", "1"), ("b", "2")]


def test_tags_with_wrong_member_names_fail_validation_like_the_aws_cli() -> None:
    with pytest.raises(KmsCliError) as e:
        ca.tags_value("--tags", ["Key=a,Value=b"])
    assert e.value.message.splitlines()[0] == "Parameter validation failed:"
    assert 'Unknown parameter in Tags[0]: "Key", must be one of: TagKey, TagValue' in e.value.message
    assert 'Missing required parameter in Tags[0]: "TagValue"' in e.value.message
    with pytest.raises(KmsCliError):
        ca.tags_value("--tags", ['[{"TagKey": "a", "TagValue": 1}]'])


def test_tag_keys_and_grant_tokens_are_lists() -> None:
    r = request("untag-resource", "--key-id", "k", "--tag-keys", "a", "b")
    assert list(r.tag_keys) == ["a", "b"]
    r = request("untag-resource", "--key-id", "k", "--tag-keys", '["a", "b,c"]')
    assert list(r.tag_keys) == ["a", "b,c"]
    r = request("describe-key", "--key-id", "k", "--grant-tokens", "t1")
    assert list(r.grant_tokens) == ["t1"]


def test_grant_commands_take_operations_and_constraints_as_the_aws_cli_does() -> None:
    r = request("create-grant", "--key-id", "k", "--grantee-principal", "arn:aws:iam::111122223333:user/bob",
                "--operations", "Encrypt", "Decrypt", "--constraints", "EncryptionContextSubset={app=demo,x=y}",
                "--retiring-principal", "arn:aws:iam::111122223333:root", "--name", "n1")
    assert list(r.operations) == ["Encrypt", "Decrypt"] and r.name == "n1"
    assert dict(r.constraints.encryption_context_subset) == {"app": "demo", "x": "y"}
    assert not r.constraints.encryption_context_equals
    r = request("create-grant", "--key-id", "k", "--grantee-principal", "g", "--operations", "Decrypt",
                "--constraints", '{"EncryptionContextEquals": {"a": "b"}}')
    assert dict(r.constraints.encryption_context_equals) == {"a": "b"}
    with pytest.raises(KmsCliError, match="EncryptionContextSubset"):
        request("create-grant", "--key-id", "k", "--grantee-principal", "g", "--operations", "Decrypt",
                "--constraints", "Department=IT")
    r = request("retire-grant", "--grant-token", "tok")
    assert r.grant_token == "tok" and not r.HasField("key_id")
    r = request("revoke-grant", "--key-id", "k", "--grant-id", "g1")
    assert (r.key_id, r.grant_id) == ("k", "g1")


# ---------------------------------------------------------------- other kinds and presence


def test_integers_booleans_and_presence() -> None:
    r = request("schedule-key-deletion", "--key-id", "k", "--pending-window-in-days", "7")
    assert r.HasField("pending_window_in_days") and r.pending_window_in_days == 7
    assert not request("schedule-key-deletion", "--key-id", "k").HasField("pending_window_in_days")
    r = request("create-key", "--multi-region", "--bypass-policy-lockout-safety-check", "--description", "")
    assert r.multi_region and r.bypass_policy_lockout_safety_check
    assert r.HasField("description") and r.description == ""
    assert not request("create-key", "--no-multi-region").multi_region
    r = request("generate-data-key", "--key-id", "k", "--number-of-bytes", "64")
    assert r.number_of_bytes == 64 and not r.HasField("key_spec")
    with pytest.raises(KmsCliError) as e:
        request("list-keys", "--limit", "ten")
    assert e.value.message == "Error parsing parameter '--limit': expected an integer, received: 'ten'"


def test_timestamps_in_epoch_seconds_or_iso8601() -> None:
    assert ca.timestamp_ms("--valid-to", "1700000000") == 1_700_000_000_000
    assert ca.timestamp_ms("--valid-to", "1700000000.25") == 1_700_000_000_250
    assert ca.timestamp_ms("--valid-to", "2023-11-14T22:13:20Z") == 1_700_000_000_000
    with pytest.raises(KmsCliError):
        ca.timestamp_ms("--valid-to", "tomorrow")


def test_policy_from_file(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text('{"Version": "2012-10-17"}')
    r = request("put-key-policy", "--key-id", "k", "--policy-name", "default", "--policy", f"file://{tmp_path}/policy.json")
    assert r.policy == '{"Version": "2012-10-17"}' and r.policy_name == "default"


def test_every_command_maps_to_an_rpc_and_its_options_to_request_fields() -> None:
    for cmd in commands.COMMANDS:
        service = pb.DESCRIPTOR.services_by_name[cmd.service]
        method = service.methods_by_name[cmd.rpc]
        assert method.input_type.name == cmd.request_type.__name__
        for param in cmd.params:
            assert param.field in cmd.request_type.DESCRIPTOR.fields_by_name
            assert param.option == "--" + param.field.replace("_", "-")
        if cmd.service == "Kms":   # the AWS operation name in kebab case
            assert cmd.name.replace("-", "") == cmd.rpc.lower()
        if cmd.result_key:
            assert {"limit", "marker"} <= set(cmd.request_type.DESCRIPTOR.fields_by_name)
    kinds = {p.option: p.kind for p in commands.COMMANDS_BY_NAME["import-key-material"].params}
    assert kinds["--valid-to"] == "timestamp" and kinds["--import-token"] == "blob"


def test_required_options_are_the_aws_required_members() -> None:
    with pytest.raises(KmsCliError) as e:
        parse("encrypt", "--key-id", "k")
    assert e.value.exit_code == 252
    assert e.value.message.endswith("kms: error: the following arguments are required: --plaintext")
    parse("create-key")          # no member of CreateKey is required
    parse("describe-custom-key-stores")


def test_global_options_before_or_after_the_command() -> None:
    a = parse("--output", "text", "list-keys", "--endpoint-url", "grpc://h:1")
    assert a.output == "text" and a.endpoint_url == "grpc://h:1"
    assert parse("list-keys", "--query", "Keys").query == "Keys"


# ---------------------------------------------------------------- responses in the AWS shape


def test_key_metadata_is_shaped_like_aws() -> None:
    md = pb.KeyMetadata(aws_account_id="111122223333", key_id="k", arn="arn:k", creation_date=1_499_988_169_234,
                        enabled=True, description="", key_usage="ENCRYPT_DECRYPT", key_state="Enabled",
                        origin="AWS_CLOUDHSM", custom_key_store_id="cks-1", cloud_hsm_cluster_id="cluster-1",
                        key_manager="CUSTOMER", customer_master_key_spec="SYMMETRIC_DEFAULT",
                        key_spec="SYMMETRIC_DEFAULT", encryption_algorithms=["SYMMETRIC_DEFAULT"])
    data = output.to_aws(pb.DescribeKeyResponse(key_metadata=md))
    assert list(data) == ["KeyMetadata"]
    assert list(data["KeyMetadata"]) == [
        "AWSAccountId", "KeyId", "Arn", "CreationDate", "Enabled", "Description", "KeyUsage", "KeyState", "Origin",
        "CustomKeyStoreId", "CloudHsmClusterId", "KeyManager", "CustomerMasterKeySpec", "KeySpec",
        "EncryptionAlgorithms", "MultiRegion"]
    assert data["KeyMetadata"]["CreationDate"] == 1499988169.234
    assert data["KeyMetadata"]["Description"] == "" and data["KeyMetadata"]["MultiRegion"] is False
    md.deletion_date = 1_500_000_000_000
    assert output.to_aws(md)["DeletionDate"] == 1500000000.0


def test_binary_members_are_base64_and_empty_responses_print_nothing() -> None:
    data = output.to_aws(pb.EncryptResponse(ciphertext_blob=b"\x00\x01\xff", key_id="arn", encryption_algorithm="S"))
    assert data == {"CiphertextBlob": "AAH/", "KeyId": "arn", "EncryptionAlgorithm": "S"}
    assert output.render(output.to_aws(pb.EnableKeyResponse()), "json", None) == ""
    assert output.render(output.to_aws(pb.EnableKeyResponse()), "text", None) == ""
    assert output.render({"CustomKeyStoreId": "cks-1"}, "json", None) == '{\n    "CustomKeyStoreId": "cks-1"\n}\n'


def test_store_entries_leave_out_an_unset_error_code() -> None:
    d = output.to_aws(pb.CustomKeyStoresListEntry(custom_key_store_id="cks-1", connection_state="CONNECTED"))
    assert "ConnectionErrorCode" not in d
    d = output.to_aws(pb.CustomKeyStoresListEntry(connection_state="FAILED", connection_error_code="NETWORK_ERRORS"))
    assert d["ConnectionErrorCode"] == "NETWORK_ERRORS"


def test_audit_events_parse_details() -> None:
    resp = pb.ListAuditEventsResponse(events=[pb.AuditEventEntry(event_id=1, timestamp=1000, event="DeleteKey",
                                                                 key_id="k", details_json='{"a": 1}')])
    assert commands.audit_events(resp) == {"Events": [{"EventId": 1, "Timestamp": 1.0, "Event": "DeleteKey",
                                                  "KeyId": "k", "Details": {"a": 1}}]}


def test_text_output_follows_the_aws_cli_layout() -> None:
    data = {"KeyMetadata": {"KeyId": "k", "Enabled": True, "Arn": "a", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}}
    assert output.format_text(data) == "KEYMETADATA\ta\tTrue\tk\nENCRYPTIONALGORITHMS\tSYMMETRIC_DEFAULT\n"
    tags = {"Tags": [{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": ""}]}
    assert output.format_text(tags) == "TAGS\ta\t1\nTAGS\tb\t\n"
    assert output.format_text({"CiphertextBlob": "AAH/", "KeyId": "arn"}) == "AAH/\tarn\n"
    assert output.format_text(["x", "y"]) == "x\ty\n"


def test_query_subset() -> None:
    data = {"Keys": [{"KeyId": "a"}, {"KeyId": "b"}], "KeyMetadata": {"KeyId": "k"}, "Blob": "AAH/"}
    q = output.parse_query
    assert output.apply_query(q("Blob"), data) == "AAH/"
    assert output.apply_query(q("KeyMetadata.KeyId"), data) == "k"
    assert output.apply_query(q("Keys[].KeyId"), data) == ["a", "b"]
    assert output.apply_query(q("Keys[1].KeyId"), data) == "b"
    assert output.apply_query(q("Keys[-1]"), data) == {"KeyId": "b"}
    assert output.apply_query(q("Missing.X"), data) is None
    assert output.render(data, "text", q("Blob")) == "AAH/\n"
    assert output.render(data, "text", q("Keys[].KeyId")) == "a\tb\n"
    assert output.render(data, "json", q("Nope")) == "null\n"
    with pytest.raises(KmsCliError) as e:
        q("Keys[?KeyId=='a']")
    assert e.value.exit_code == 252


# ---------------------------------------------------------------- environment, endpoint, argv


def test_env_file_defaults_real_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".kms-cluster").mkdir()
    (tmp_path / ".kms-cluster" / "env").write_text(
        "# written by kms-cluster\nKMS_ENDPOINT=127.0.0.1:1111\nexport KMS_OUTPUT='text'\n\nHSM_CO_PASSWORD=x=y\n")
    env = ca.environment({"KMS_OUTPUT": "json"}, cwd=tmp_path)
    assert env["KMS_ENDPOINT"] == "127.0.0.1:1111" and env["KMS_OUTPUT"] == "json" and env["HSM_CO_PASSWORD"] == "x=y"
    other = tmp_path / "other.env"
    other.write_text("KMS_ENDPOINT=10.0.0.1:7800\n")
    assert ca.environment({"KMS_ENV_FILE": str(other)}, cwd=tmp_path)["KMS_ENDPOINT"] == "10.0.0.1:7800"
    assert ca.environment({}, cwd=tmp_path / "nowhere") == {}


def test_bad_env_files_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(KmsCliError) as e:
        ca.environment({"KMS_ENV_FILE": str(tmp_path / "missing")})
    assert e.value.exit_code == 253
    (tmp_path / "bad").write_text("JUST A LINE\n")
    with pytest.raises(KmsCliError) as e:
        ca.environment({"KMS_ENV_FILE": str(tmp_path / "bad")})
    assert e.value.exit_code == 253 and "line 1" in e.value.message
    assert e.value.message == f"Unable to parse the environment file {tmp_path / 'bad'}: line 1: expected KEY=VALUE"


def test_endpoint_forms() -> None:
    assert ca.parse_endpoint("127.0.0.1:7800") == ("127.0.0.1:7800", None)
    assert ca.parse_endpoint("grpc://kms.local:7800/") == ("kms.local:7800", False)
    assert ca.parse_endpoint("grpcs://[::1]:7800") == ("[::1]:7800", True)
    for bad in ("http://h:1", "h", "h:0", "h:port", "grpc://h:1/path"):
        with pytest.raises(KmsCliError):
            ca.parse_endpoint(bad)


def test_settings_from_environment_and_options() -> None:
    s = settings.resolve(parse("list-keys"), {}, [])
    assert (s.target, s.tls, s.output, s.binary_format, s.timeout) == ("127.0.0.1:7800", False, "json", "base64", 60)
    s = settings.resolve(parse("list-keys"), {"KMS_ENDPOINT": "grpc://h:9", "KMS_CA_FILE": "/ca.pem", "KMS_OUTPUT": "text"}, [])
    assert (s.target, s.tls, s.url, s.ca_file, s.output) == ("h:9", True, "grpcs://h:9", "/ca.pem", "text")
    s = settings.resolve(parse("--endpoint-url", "h:1", "list-keys", "--cli-read-timeout", "0"), {"KMS_ENDPOINT": "x:2"}, [])
    assert s.target == "h:1" and s.timeout is None
    with pytest.raises(KmsCliError):
        settings.resolve(parse("list-keys", "--output", "yaml"), {}, [])


def test_help_words_and_passwords_starting_with_a_dash() -> None:
    assert cli.prepare_argv(["help"]) == ["--help"]
    assert cli.prepare_argv(["encrypt", "help"]) == ["encrypt", "--help"]
    assert cli.prepare_argv(["create-alias", "--alias-name", "help"]) == ["create-alias", "--alias-name", "help"]
    assert cli.prepare_argv(["update-custom-key-store", "--key-store-password", "-dashPw1"]) == \
        ["update-custom-key-store", "--key-store-password=-dashPw1"]
    assert ca.secret_values(["--key-store-password", "abcdefg", "--key-store-password=hijklmn"]) == \
        ["abcdefg", "hijklmn"]


def test_usage_errors_never_print_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.run(["create-custom-key-store", "--custom-key-store-name", "s", "--key-store-password", "SecretPw1",
                  "--bogus", "SecretPw1"], environ={})
    out, err = capsys.readouterr()
    assert rc == 252 and out == ""
    assert "SecretPw1" not in err and "Unknown options: --bogus, ***" in err
    assert err.startswith("usage: kms [options] <command> [parameters]\n")


def test_invalid_base64_exits_252_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.run(["--endpoint-url", "127.0.0.1:1", "encrypt", "--key-id", "k", "--plaintext", "hello"], environ={})
    assert rc == 252 and capsys.readouterr().err == '\nInvalid base64: "hello"\n'


def test_no_credentials_exits_253_before_any_call(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    rc = cli.run(["list-keys", "--endpoint-url", "127.0.0.1:1"], environ={})
    assert rc == 253 and "Unable to locate credentials" in capsys.readouterr().err


def test_unreachable_endpoint_exits_255(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.harness import free_port

    port = free_port()
    creds = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE01", "AWS_SECRET_ACCESS_KEY": "secret-secret-secret"}
    rc = cli.run(["list-keys", "--endpoint-url", f"127.0.0.1:{port}", "--cli-read-timeout", "5"], environ=creds)
    assert rc == 255
    assert capsys.readouterr().err == f'\nCould not connect to the endpoint URL: "grpc://127.0.0.1:{port}"\n'


# ---------------------------------------------------------------- pagination like the AWS CLI


class FakeClient:
    """Pages of ListKeys over ``n`` keys, ``limit`` per page, marker = index of the next key."""

    def __init__(self, n: int, paginate: bool = True) -> None:
        self.keys = [f"k{i}" for i in range(n)]
        self.calls: list[tuple[int, str | None]] = []
        self.s = settings.resolve(parse("list-keys", *([] if paginate else ["--no-paginate"])), {}, [])

    def call(self, service: str, rpc: str, r: pb.ListKeysRequest) -> pb.ListKeysResponse:
        limit = r.limit if r.HasField("limit") else 3
        start = int(r.marker) if r.HasField("marker") else 0
        self.calls.append((limit, r.marker if r.HasField("marker") else None))
        page = self.keys[start:start + limit]
        resp = pb.ListKeysResponse(keys=[pb.KeyListEntry(key_id=k, key_arn="arn:" + k) for k in page])
        if start + limit < len(self.keys):
            resp.next_marker, resp.truncated = str(start + limit), True
        return resp


def list_keys(client: FakeClient, *argv: str) -> dict:
    args = parse("list-keys", *argv)
    cmd = commands.COMMANDS_BY_NAME["list-keys"]
    return kms_client.run_list(client, cmd, commands.build_request(cmd, args, "base64"), args)  # type: ignore[arg-type]


def ids(result: dict) -> list[str]:
    return [k["KeyId"] for k in result["Keys"]]


def test_all_pages_are_merged_without_markers() -> None:
    c = FakeClient(7)
    result = list_keys(c)
    assert ids(result) == [f"k{i}" for i in range(7)] and list(result) == ["Keys"]
    assert c.calls == [(3, None), (3, "3"), (3, "6")]
    c = FakeClient(7)
    list_keys(c, "--page-size", "5")
    assert c.calls == [(5, None), (5, "5")]
    c = FakeClient(4)
    list_keys(c, "--limit", "2")           # --limit alone keeps pagination, as in the AWS CLI
    assert c.calls == [(2, None), (2, "2")]


def test_max_items_and_starting_token_resume_exactly() -> None:
    c = FakeClient(8)
    first = list_keys(c, "--max-items", "4")                      # cuts page 2 after one item
    assert ids(first) == ["k0", "k1", "k2", "k3"]
    assert json.loads(base64.b64decode(first["NextToken"])) == {"Marker": "3", "boto_truncate_amount": 1}
    second = list_keys(FakeClient(8), "--max-items", "3", "--starting-token", first["NextToken"])
    assert ids(second) == ["k4", "k5", "k6"]
    third = list_keys(FakeClient(8), "--starting-token", second["NextToken"])
    assert ids(third) == ["k7"] and "NextToken" not in third
    exact = list_keys(FakeClient(8), "--max-items", "3")          # ends on a page boundary
    assert json.loads(base64.b64decode(exact["NextToken"])) == {"Marker": "3"}
    assert "NextToken" not in list_keys(FakeClient(3), "--max-items", "3")


def test_marker_or_no_paginate_print_the_raw_page() -> None:
    result = list_keys(FakeClient(7), "--marker", "3")
    assert ids(result) == ["k3", "k4", "k5"] and result["NextMarker"] == "6" and result["Truncated"] is True
    result = list_keys(FakeClient(7, paginate=False))
    assert ids(result) == ["k0", "k1", "k2"] and result["Truncated"] is True
    with pytest.raises(KmsCliError) as e:
        list_keys(FakeClient(7), "--marker", "3", "--max-items", "1")
    assert e.value.exit_code == 252
    with pytest.raises(KmsCliError):
        list_keys(FakeClient(7), "--starting-token", "not-a-token")
