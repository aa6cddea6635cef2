# Bearer tokens (admin vs read, docs/security.md) and TLS, through hotplane_client's channel
# helpers, against a real hotplane. The certificates are made here with `cryptography`: a
# throwaway CA and a server certificate for localhost and 127.0.0.1.
import datetime
import hashlib
import ipaddress
import json
import secrets

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import hotplane_client as hc
from hotplane_client import hot_reload_pb2 as hr, patterns_pb2 as p

LEARN = p.LearnPatternRequest(query="who may learn this", category="c", confidence=0.9)


def tokens_file(path):
    """Writes a tokens file with an admin and a read token; returns (admin, read)."""
    admin, read = secrets.token_hex(32), secrets.token_hex(32)
    sha = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
    path.write_text(json.dumps({"tokens": [
        {"name": "deployer", "sha256": sha(admin), "scopes": ["admin"]},
        {"name": "chat-backend", "sha256": sha(read), "scopes": ["read"]},
    ]}))
    return admin, read


def code_of(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def test_bearer_tokens_admin_and_read(start_server, tmp_path):
    admin, read = tokens_file(tmp_path / "tokens.json")
    server = start_server("--auth-tokens-file", str(tmp_path / "tokens.json"))
    with server.channel(token=admin) as a, server.channel(token=read) as r, \
            server.channel() as none, server.channel(token="wrong") as wrong:
        pa, pr = hc.patterns_pb2_grpc.PatternsStub(a), hc.patterns_pb2_grpc.PatternsStub(r)
        learned = pa.LearnPattern(LEARN)
        assert learned.created
        # read: matches, but may not write.
        assert hc.match_at_least(pr, LEARN.query, learned.generation).matched
        assert code_of(lambda: pr.LearnPattern(LEARN)) == grpc.StatusCode.PERMISSION_DENIED
        # No token or a wrong one: not even reads (loopback is not exempt once tokens are set).
        for ch in (none, wrong):
            stub = hc.patterns_pb2_grpc.PatternsStub(ch)
            assert code_of(lambda: stub.MatchPattern(p.MatchPatternRequest(query="x"))) == \
                grpc.StatusCode.UNAUTHENTICATED


def make_certs(tmp_path):
    """A CA and a server certificate it signs, for localhost and 127.0.0.1; returns paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    def cert(subject, issuer, key, signer, ca, sans=()):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return b.sign(signer, hashes.SHA256())
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(name("hotplane test CA"), name("hotplane test CA"), ca_key, ca_key, True)
    srv = cert(name("localhost"), ca.subject, srv_key, ca_key, False,
               [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    (tmp_path / "ca.pem").write_bytes(pem(ca))
    (tmp_path / "server.pem").write_bytes(pem(srv))
    (tmp_path / "server.key").write_bytes(srv_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"


def test_tls_with_a_bearer_token(start_server, tmp_path):
    ca, cert, key = make_certs(tmp_path)
    admin, read = tokens_file(tmp_path / "tokens.json")
    server = start_server("--tls-cert-file", str(cert), "--tls-key-file", str(key),
                          "--auth-tokens-file", str(tmp_path / "tokens.json"))
    root = ca.read_bytes()
    with hc.secure_channel(server.addr, root_certificates=root, token=admin, server_name="localhost") as ch:
        status = hc.hot_reload_pb2_grpc.HotReloadStub(ch).GetStatus(hr.GetStatusRequest())
        assert status.instance_id
        assert hc.patterns_pb2_grpc.PatternsStub(ch).LearnPattern(LEARN).created
    with hc.secure_channel(server.addr, root_certificates=root, token=read, server_name="localhost") as ch:
        assert code_of(lambda: hc.patterns_pb2_grpc.PatternsStub(ch).LearnPattern(LEARN)) == \
            grpc.StatusCode.PERMISSION_DENIED
    # Plaintext to a TLS port, or TLS trusting another CA, does not get an answer.
    with server.channel(token=admin) as plain:
        assert code_of(lambda: hc.hot_reload_pb2_grpc.HotReloadStub(plain).GetStatus(
            hr.GetStatusRequest(), timeout=10)) == grpc.StatusCode.UNAVAILABLE
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_certs(tmp_path / "other")
    with hc.secure_channel(server.addr, root_certificates=other_ca.read_bytes(), token=admin,
                           server_name="localhost") as ch:
        assert code_of(lambda: hc.hot_reload_pb2_grpc.HotReloadStub(ch).GetStatus(
            hr.GetStatusRequest(), timeout=10)) == grpc.StatusCode.UNAVAILABLE
