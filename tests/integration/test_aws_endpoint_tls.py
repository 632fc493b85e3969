"""The AWS endpoint over HTTPS (kms-frontend --aws-tls-cert/--aws-tls-key): boto3 trusts it through
the CA it is given (verify=, as AWS_CA_BUNDLE does) and nothing else; plain HTTP to it gets no
answer; a key and certificate that do not go together stop the frontend with a clear message.
A real kms-frontend process (no HSM is needed for KMS's account-level calls, STS and cloudhsmv2)."""
from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.exceptions import SSLError
from cryptography.x509.oid import ExtendedKeyUsageOID

from hsm_node import certs
from hsm_node.mgmt import provision
from plumbing.files import write_private
from tests.harness import FrontendProcess, running_frontend


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("aws-tls")
    anchor = provision.make_trust_anchor(d / "ca")
    key = certs.new_key()
    cert = certs.issue_tls_cert(certs.load_key(anchor.key_path.read_bytes()), certs.load_cert(anchor.cert_pem), key,
                                "kms-frontend AWS endpoint", ["127.0.0.1", "localhost"],
                                [ExtendedKeyUsageOID.SERVER_AUTH])
    write_private(d / "aws.key", certs.key_pem(key))
    write_private(d / "aws.crt", certs.cert_pem(cert).encode())
    return d


@pytest.fixture(scope="module")
async def fe(tmp_path_factory, tls_files):
    async with running_frontend(tmp_path_factory.mktemp("fe"), [], env={
            "KMS_AWS_TLS_CERT": str(tls_files / "aws.crt"), "KMS_AWS_TLS_KEY": str(tls_files / "aws.key")}) as frontend:
        yield frontend


def client(fe: FrontendProcess, service: str, verify, host: str = "127.0.0.1"):
    key_id, secret = fe.aws_credentials()
    return boto3.client(service, endpoint_url=f"https://{host}:{fe.aws_port}", region_name=fe.region,
                        aws_access_key_id=key_id, aws_secret_access_key=secret, verify=verify)


async def test_boto3_trusts_it_through_the_cluster_ca_for_every_service(fe, tls_files) -> None:
    ca = str(tls_files / "ca" / "customerCA.crt")
    for host in ("127.0.0.1", "localhost"):
        assert client(fe, "kms", ca, host).list_keys()["Keys"] == []
    assert client(fe, "sts", ca).get_caller_identity()["Arn"] == "arn:aws:iam::111122223333:root"
    assert client(fe, "cloudhsmv2", ca).describe_clusters()["Clusters"] == []
    log = fe.log_path.read_text()
    assert f'"endpoint_url": "https://127.0.0.1:{fe.aws_port}"' in log


async def test_without_the_ca_or_over_plain_http_there_is_no_exchange(fe) -> None:
    with pytest.raises(SSLError):
        client(fe, "kms", True).list_keys()  # the system's CAs do not know the cluster's
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{fe.aws_port}/", data=b"{}", timeout=10)


def test_a_certificate_without_its_key_stops_the_frontend_with_a_message(tmp_path, tls_files) -> None:
    other = certs.key_pem(certs.new_key())
    write_private(tmp_path / "other.key", other)
    r = subprocess.run([sys.executable, "-m", "kms_frontend.server", "--listen", "127.0.0.1:0",
                        "--aws-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                        "--master-key-file", str(tmp_path / "master.key"),
                        "--aws-tls-cert", str(tls_files / "aws.crt"), "--aws-tls-key", str(tmp_path / "other.key")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "--aws-tls-cert, --aws-tls-key" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "kms_frontend.server", "--listen", "127.0.0.1:0",
                        "--data-dir", str(tmp_path / "data"), "--master-key-file", str(tmp_path / "master.key"),
                        "--aws-tls-cert", str(tls_files / "aws.crt")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "go together" in r.stdout + r.stderr
