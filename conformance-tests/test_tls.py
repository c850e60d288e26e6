"""TLS (UDN-FED-6): a node serving Flight SQL over TLS, reached by pyarrow, by the ADBC driver
and by a coordinator that verifies the peer's certificate against the federation's CA.

The suite is its own certificate authority: `cryptography` makes a CA and a certificate for
127.0.0.1 and localhost signed by it.
"""

from __future__ import annotations

import datetime
import ipaddress

import adbc_driver_flightsql as flightsql
import adbc_driver_flightsql.dbapi
import adbc_driver_manager
import pyarrow.flight as flight
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from udn_conformance import flightsql as fsql
from udn_conformance.errors import adbc_grpc_status, flight_grpc_status
from udn_conformance.node import NodeStartError

COUNT = "SELECT count(*) AS n FROM air_quality"


def _certificate(subject, issuer, public_key, signing_key, extensions):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def make_pki(directory, name: str) -> dict:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=True, path_length=None), True),
    ])  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        ca_name,
        key.public_key(),
        ca_key,
        [
            (x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]), False),  # fmt: skip
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    paths = {
        "ca": directory / f"{name}-ca.pem",
        "cert": directory / f"{name}-cert.pem",
        "key": directory / f"{name}-key.pem",
    }
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(server.public_bytes(pem))
    paths["key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    return make_pki(directory, "federation"), make_pki(directory, "stranger")


@pytest.fixture(scope="module")
def tls_node(launcher, pki):
    ours, _ = pki
    return launcher.spawn(
        ["--tls-cert", str(ours["cert"]), "--tls-key", str(ours["key"])], name="utrecht"
    )


def direct_count(node, ca_path) -> int:
    c = flight.FlightClient(node.flight_url, tls_root_certs=ca_path.read_bytes())
    _, table = fsql.statement(c, COUNT)
    return table.column("n")[0].as_py()


@pytest.mark.requirement("UDN-FED-6")
def test_a_node_serves_flight_sql_over_tls(tls_node, pki):
    ours, stranger = pki
    assert tls_node.flight_url.startswith("grpc+tls://")
    assert direct_count(tls_node, ours["ca"]) > 0
    # The ADBC driver, with the CA as its root.
    options = {flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: ours["ca"].read_text()}
    with adbc_driver_flightsql.dbapi.connect(
        tls_node.flight_url, db_kwargs=options, autocommit=True
    ) as conn, conn.cursor() as cur:
        cur.execute(COUNT)
        assert cur.fetchone()[0] > 0
    # A client that does not trust the certificate is refused; plain gRPC gets nowhere.
    untrusting = flight.FlightClient(
        tls_node.flight_url, tls_root_certs=stranger["ca"].read_bytes()
    )
    with pytest.raises(flight.FlightError) as err:
        fsql.statement(untrusting, COUNT)
    assert flight_grpc_status(err.value) == "Unavailable", str(err.value)
    plain = flight.FlightClient(tls_node.flight_url.replace("grpc+tls://", "grpc://"))
    with pytest.raises(flight.FlightError):
        fsql.statement(plain, COUNT, flight.FlightCallOptions(timeout=10))
    assert direct_count(tls_node, ours["ca"]) > 0, "the node keeps serving"


def coordinator_count(node, sql: str):
    with adbc_driver_flightsql.dbapi.connect(node.flight_url, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()


@pytest.mark.requirement("UDN-FED-6")
def test_a_coordinator_reaches_a_peer_over_tls(launcher, tls_node, pki):
    ours, stranger = pki
    peer = f"utrecht={tls_node.flight_url}"
    coordinator = launcher.spawn(
        ["--peer", peer, "--peer-tls-ca", str(ours["ca"])], name="amsterdam"
    )
    rows = coordinator_count(coordinator, "SELECT count(*) FROM utrecht.public.air_quality")
    assert rows[0][0] == direct_count(tls_node, ours["ca"])
    # A coordinator that trusts another CA refuses the peer's certificate, naming the peer.
    wary = launcher.spawn(
        ["--peer", peer, "--peer-tls-ca", str(stranger["ca"])], name="amsterdam"
    )
    with pytest.raises(adbc_driver_manager.Error) as err:
        coordinator_count(wary, "SELECT count(*) FROM utrecht.public.air_quality")
    assert adbc_grpc_status(err.value) == "Unavailable", str(err.value)
    assert "utrecht" in str(err.value) and "certificate" in str(err.value)


@pytest.mark.requirement("UDN-FED-6")
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--tls-cert", "{cert}"], "tls_cert and node.tls_key go together"),
        (["--tls-cert", "{cert}", "--tls-key", "{missing}"], "cannot read the TLS private key"),
        (["--tls-cert", "{key}", "--tls-key", "{key}"], "the TLS certificate or key cannot be used"),
    ],
    ids=["certificate without key", "missing key", "key as certificate"],
)
def test_bad_tls_settings_stop_the_node(launcher, pki, tmp_path, args, expected):
    ours, _ = pki
    files = {"cert": ours["cert"], "key": ours["key"], "missing": tmp_path / "no-such-key.pem"}
    args = [a.format(**files) for a in args]
    with pytest.raises(NodeStartError) as err:
        launcher.spawn(args, name="utrecht")
    assert expected in err.value.stderr, err.value.stderr[-2000:]
