"""Shared by the access-control tests (`test_access_*.py`): the suite as identity provider, the
nodes and policies more than one file uses, and ADBC / Flight clients carrying a bearer token.

The suite plays identity provider: its RSA key's JWKS is the nodes' JWKS, and PyJWT signs the
tokens. The strict node has no public dataset, so it refuses anonymous callers outright. The
fixtures are module-scoped: a test file imports the ones it uses.

Against a node started by hand (`UDN_FLIGHT_URL`), the tests that can run there use the key,
issuer and audience the supplier configured on it (`udn-conformance run --signing-key FILE.jwk
--issuer ISS --audience AUD`, read from `UDN_SIGNING_KEY`, `UDN_ISSUER`, `UDN_AUDIENCE`) and
the certification grants (`certification_policy`, and in words in README.md).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import adbc_driver_flightsql as flightsql
import adbc_driver_flightsql.dbapi
import adbc_driver_manager
import pyarrow.flight as flight
import pytest

from . import flightsql as fsql
from . import tokens

AUDIENCE = "utrecht"
OPTIONS = fsql.OPTIONS


STRICT_POLICY = """
[[dataset]]
name = "traffic_counts"
  [[dataset.rule]]
  groups = ["mobility"]
  access = "raw"
"""


COORDINATOR_POLICY = """
[[dataset]]
name = "air_quality"
public = true
"""

BOTH = ["amsterdam", "utrecht"]


class Bearer(flight.ClientMiddlewareFactory):
    """Sends the given `authorization` header value(s) on every call."""

    def __init__(self, *values: str):
        self.values = list(values)

    def start_call(self, info):
        values = self.values

        class _Middleware(flight.ClientMiddleware):
            def sending_headers(self):
                return {"authorization": values} if values else {}

        return _Middleware()


def client(node, *values: str) -> flight.FlightClient:
    return flight.FlightClient(node.flight_url, middleware=[Bearer(*values)])


def adbc(node, token: str | None):
    options = {flightsql.DatabaseOptions.TIMEOUT_QUERY.value: "60"}
    if token is not None:
        options[flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    return adbc_driver_flightsql.dbapi.connect(node.flight_url, db_kwargs=options, autocommit=True)


# The grants a node under certification is configured with, in words (README.md) and as
# Polder's policy (`certification_policy`).
PROTECTED = "traffic_counts"
HIDDEN = "hidden_counts"
PROTECTED_GROUP = "mobility"
DENIED_SUBJECT = "mallory"
DENIED_COLUMNS = ["segment_id", "v85"]
ORGANISATION = "gemeente-utrecht"

# The rules of `traffic_counts`, shared with the spawned node of test_access_rules.py.
PROTECTED_RULES = f"""
  [[dataset.rule]]
  subjects = ["{DENIED_SUBJECT}"]
  access = "deny"

  [[dataset.rule]]
  groups = ["{PROTECTED_GROUP}"]
  access = "raw"
  deny_columns = {DENIED_COLUMNS!r}

  [[dataset.rule]]
  organisations = ["{ORGANISATION}"]
  access = "raw"
""".replace("'", '"')


def certification_policy(tables: list[str]) -> str:
    """Polder's policy for the certification grants: `traffic_counts` by three ordered rules
    (the subject `mallory` denied; the group `mobility` raw without `segment_id` and `v85`;
    the organisation `gemeente-utrecht` raw), `hidden_counts` hidden and raw to the group
    `mobility`, every other table public."""
    out = ["# The UDN certification grants (conformance-tests/README.md), as Polder's policy.\n"]
    for name in tables:
        if name == PROTECTED:
            out.append(f'[[dataset]]\nname = "{name}"{PROTECTED_RULES}')
        elif name == HIDDEN:
            out.append(f'[[dataset]]\nname = "{name}"\nhidden = true\n  [[dataset.rule]]\n'
                       f'  groups = ["{PROTECTED_GROUP}"]\n  access = "raw"\n')  # fmt: skip
        else:
            out.append(f'[[dataset]]\nname = "{name}"\npublic = true\n')
    return "\n".join(out)


def remote_signer() -> tokens.Signer | None:
    """The supplier's key for a node started by hand, or None (the suite then cannot mint
    tokens that node accepts)."""
    key = os.environ.get("UDN_SIGNING_KEY")
    if not key:
        return None
    return tokens.Signer.from_jwk(Path(key), os.environ.get("UDN_ISSUER") or tokens.ISSUER)


def certification_token() -> str | None:
    """On a node under certification for the security class, a token the certification grants
    let read every table (metadata stays public, so its catalog lists them all); None on a node
    without access control."""
    signer = remote_signer() if os.environ.get("UDN_FLIGHT_URL") else None
    if signer is None:
        return None
    return signer.token(default_audience(), sub="udn-conformance", groups=[PROTECTED_GROUP])


def default_audience() -> str:
    return os.environ.get("UDN_AUDIENCE") or AUDIENCE


@pytest.fixture(scope="module")
def idp(tmp_path_factory, remote):
    if remote is not None:
        signer = remote_signer()
        if signer is None:
            pytest.skip("a node started by hand: the security tests need its signing key "
                        "(udn-conformance run --signing-key FILE.jwk --issuer ISS --audience AUD)")
        return signer, None, None
    directory = tmp_path_factory.mktemp("idp")
    signer = tokens.Signer.new()
    return signer, signer.write_jwks(directory / "jwks.json"), directory


def auth_args(idp, policy_text: str, name: str, audience: str = AUDIENCE) -> list[str]:
    _, jwks, directory = idp
    if jwks is None:
        pytest.skip("starts its own node with its own policy; not possible against the remote "
                    "node in UDN_FLIGHT_URL")
    policy = directory / f"{name}.toml"
    policy.write_text(policy_text)
    return [
        "--jwks", str(jwks), "--issuer", tokens.ISSUER, "--audience", audience,
        "--policy", str(policy),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def strict_node(launcher, idp, remote):
    """A node serving `traffic_counts` to the group `mobility` only: one with no public
    dataset, or the node under certification (whose other tables are public)."""
    if remote is not None:
        return remote
    return launcher.spawn(auth_args(idp, STRICT_POLICY, "strict"), name="utrecht")


def token(idp, audience: str | list[str] | None = None, **claims) -> str:
    signer, _, _ = idp
    return signer.token(audience or default_audience(), **claims)


def query_one(node, t: str | None, sql: str):
    with adbc(node, t) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall(), [d[0] for d in cur.description]


def refused(node, t: str | None, sql: str) -> adbc_driver_manager.Error:
    with adbc(node, t) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute(sql)
            cur.fetchall()
    return err.value


def aggregate_policy(k: int, on_violation: str = "suppress") -> str:
    return f"""
[[dataset]]
name = "air_quality"
personal = true
  [dataset.aggregate]
  unit = "sensor_id"
  min_group_size = {k}
  dimensions = ["neighbourhood_code", "sensor_type", "timestamp"]
  functions = ["count", "avg", "sum"]
  on_violation = "{on_violation}"
  [[dataset.rule]]
  groups = ["research"]
  access = "aggregate"
"""


K_SENSORS = 2


@pytest.fixture(scope="module")
def sensor_files(polder_bin, tmp_path_factory):
    """The sample data as files, so DuckDB sees exactly what the node serves."""
    if polder_bin is None:
        pytest.skip("needs the polder binary")
    out = tmp_path_factory.mktemp("sample")
    subprocess.run([polder_bin, "demo-data", "--out", out], check=True, capture_output=True,
                   timeout=120)  # fmt: skip
    return out / "utrecht" / "air_quality.csv"


@pytest.fixture(scope="module")
def aggregate_node(launcher, idp, sensor_files):
    args = auth_args(idp, aggregate_policy(K_SENSORS), "aggregate")
    return launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")


def duckdb_groups(path, k: int) -> tuple[dict, set]:
    import duckdb

    con = duckdb.connect()
    rows = con.sql(
        f"SELECT neighbourhood_code, count(*), count(DISTINCT sensor_id) FROM "
        f"read_csv_auto('{path}') GROUP BY 1"
    ).fetchall()
    return {zone: n for zone, n, units in rows if units >= k}, {zone for zone, _, u in rows if u < k}


PER_NEIGHBOURHOOD = (
    "SELECT neighbourhood_code, count(*) AS n FROM air_quality GROUP BY neighbourhood_code"
)


GUARDED_POLICY = """
[[dataset]]
name = "air_quality"
personal = true
  [[dataset.rule]]
  roles = ["district-officer"]
  access = "raw"
  row_filter = "array_has($groups, neighbourhood_code)"
  masks = { sensor_id = "NULL", lat = "round(lat, 2)", lon = "round(lon, 2)" }
"""


DISTRICTS = ["BU03440000", "BU03440100"]


@pytest.fixture(scope="module")
def guarded_node(launcher, idp, polder_bin, sensor_files, tmp_path_factory):
    directory = tmp_path_factory.mktemp("guarded")
    keys = directory / "audit-keys"
    subprocess.run([polder_bin, "token", "keygen", "--out", keys, "--kid", "audit"],
                   check=True, timeout=60)  # fmt: skip
    log_path = directory / "audit.jsonl"
    args = auth_args(idp, GUARDED_POLICY, "guarded")
    args += ["--audit-log", str(log_path), "--audit-key", str(keys / "token-key.pem")]
    node = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    return node, log_path
