"""TLS: ``get_client(address=..., security=...)`` and ``get_client(scheduler_file=...,
security=...)`` on a real TLS ``LocalCluster`` (worker processes) whose CA and certificate
are made here, a certified fit over it, and the refusals without the certificate."""

import contextlib
import datetime
import ipaddress
import json

import numpy as np
import pytest
from distributed import Client, LocalCluster, Security, default_client

from dasksvm import LinearSVC
from dasksvm.parallel import get_client

from ._reference import load_xz

# a9a: C small enough that 2-block CoCoA+ reaches tol in tens of rounds
C, TOL, N_ROWS = 0.001, 1e-5, 8000


def _write_pki(folder):
    """A self-signed CA and one certificate it signs (for 127.0.0.1 / localhost, server and
    client use: every node of the cluster and the client present it), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    # a validity window of days around now: certificates are checked against the clock
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=2)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("dasksvm test CA")).issuer_name(name("dasksvm test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {n: folder / f"{n}.pem" for n in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {n: str(p) for n, p in paths.items()}


def _security(pki, with_cert=True):
    cert = {}
    if with_cert:
        for role in ("client", "scheduler", "worker"):
            cert[f"tls_{role}_cert"] = pki["cert"]
            cert[f"tls_{role}_key"] = pki["key"]
    return Security(tls_ca_file=pki["ca"], require_encryption=True, **cert)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A LocalCluster of 2 worker processes speaking only TLS with the CA and certificate
    written here; its scheduler writes a scheduler file."""
    folder = tmp_path_factory.mktemp("pki")
    pki = _write_pki(folder)
    sec = _security(pki)
    scheduler_file = folder / "scheduler.json"
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           protocol="tls", security=sec, dashboard_address="127.0.0.1:0",
                           silence_logs=40, scheduler_kwargs={"scheduler_file": str(scheduler_file)})
    yield cluster, sec, pki, str(scheduler_file)
    cluster.close()


@pytest.fixture(scope="module")
def a9a_subset(data_dir):
    X, y = load_xz(data_dir / "a9a.xz")
    return X[:N_ROWS], y[:N_ROWS]


def _no_default_client():
    """get_client prefers the default client: these tests need there to be none."""
    try:
        left = default_client()
    except ValueError:
        return
    raise AssertionError(f"a default client is left ({left}): get_client() would return it")


def test_fit_over_tls_matches_the_fit_without_tls(tls_cluster, a9a_subset, thread_client):
    cluster, sec, _, _ = tls_cluster
    X, y = a9a_subset
    _no_default_client()
    client = get_client(address=cluster.scheduler_address, security=sec)
    try:
        assert client.scheduler.address == cluster.scheduler_address
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        workers = sorted(client.nthreads())
        assert len(workers) == 2 and all(w.startswith("tls://127.0.0.1:") for w in workers)
        tls = LinearSVC(C=C, tol=TOL, max_iter=2000, random_state=0, client=client).fit(X, y)
    finally:
        client.close()
    # the same fit without TLS (conftest's in-process cluster of 2 workers)
    assert not thread_client.scheduler.address.startswith("tls://")
    tcp = LinearSVC(C=C, tol=TOL, max_iter=2000, random_state=0, client=thread_client).fit(X, y)
    assert tls.converged_ and tcp.converged_
    a, b = tls.history_[-1], tcp.history_[-1]
    # each fit is certified: P - P* <= P - D <= tol |P|; and either dual bounds the other's P
    assert abs(a["primal"] - b["primal"]) <= TOL * max(abs(a["primal"]), abs(b["primal"]))
    assert a["dual"] <= b["primal"] and b["dual"] <= a["primal"]
    np.testing.assert_array_equal(tls.predict(X[:500]), tcp.predict(X[:500]))


def test_scheduler_file_with_security(tls_cluster):
    cluster, sec, _, scheduler_file = tls_cluster
    with open(scheduler_file) as f:
        assert json.load(f)["address"] == cluster.scheduler_address
    _no_default_client()
    client = get_client(scheduler_file=scheduler_file, security=sec)
    try:
        assert client.scheduler.address == cluster.scheduler_address
        assert client.scheduler_info()["id"] == cluster.scheduler.id
        assert client.submit(sum, [1, 2, 3], pure=False).result() == 6
    finally:
        client.close()


def _refused(exc_type, match=None, **kwargs):
    """get_client(**kwargs) raises; the refused Client it leaves as dask's default
    (distributed registers a Client as the default before it connects) is closed."""
    with pytest.raises(exc_type, match=match):
        get_client(**kwargs)
    with contextlib.suppress(ValueError):
        left = default_client()
        assert left.status != "running"
        left.close()
    _no_default_client()


def test_tls_scheduler_refuses_clients_without_the_certificate(tls_cluster):
    cluster, _, pki, scheduler_file = tls_cluster
    address = cluster.scheduler_address
    _no_default_client()
    # no security: distributed opens no TLS connection without a context to present
    _refused(TypeError, "ssl_context", address=address)
    # the CA alone, without the certificate and its key: no context either
    _refused(TypeError, "ssl_context", address=address, security=_security(pki, with_cert=False))
    # a certificate signed by another CA: the handshake fails
    _refused(OSError, "TLS certificate does not match", scheduler_file=scheduler_file,
             security=Security.temporary())
    # plain TCP to the TLS port: the scheduler drops the connection
    with pytest.raises(OSError):
        Client(address.replace("tls://", "tcp://"), timeout="10s", set_as_default=False)
    # the cluster still serves a client that has the certificate
    with Client(address, security=_security(pki), set_as_default=False) as c:
        assert c.submit(sum, [1, 1], pure=False).result() == 2
