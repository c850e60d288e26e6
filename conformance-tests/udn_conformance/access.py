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


# The Privacy class's part of the certification grants: `air_quality` personal, with a row
# filter and masks for district officers and aggregate-only access for researchers (the rules
# of the spawned nodes' GUARDED_POLICY and aggregate_policy, in one policy), and
# `purposed_counts` bound to purposes.
PERSONAL = "air_quality"
PURPOSED = "purposed_counts"
PURPOSES = ["research", "mobility-planning"]
OFFICER_ROLE = "district-officer"
RESEARCH_GROUP = "research"
K_SENSORS = 2
GROUP_BY = ["neighbourhood_code", "sensor_type", "timestamp"]
AGGREGATE_FUNCTIONS = ["count", "avg", "sum"]
OFFICER_RULE = f"""
  [[dataset.rule]]
  roles = ["{OFFICER_ROLE}"]
  access = "raw"
  row_filter = "array_has($groups, neighbourhood_code)"
  masks = {{ sensor_id = "NULL", lat = "round(lat, 2)", lon = "round(lon, 2)" }}
"""


def aggregate_section(k: int, on_violation: str = "suppress") -> str:
    return f"""
  [dataset.aggregate]
  unit = "sensor_id"
  min_group_size = {k}
  dimensions = {GROUP_BY!r}
  functions = {AGGREGATE_FUNCTIONS!r}
  on_violation = "{on_violation}"
""".replace("'", '"')


def certification_policy(tables: list[str]) -> str:
    """Polder's policy for the certification grants: `traffic_counts` by three ordered rules
    (the subject `mallory` denied; the group `mobility` raw without `segment_id` and `v85`;
    the organisation `gemeente-utrecht` raw), `hidden_counts` hidden and raw to the group
    `mobility`, `air_quality` personal (district officers raw with a row filter and masks,
    the group `research` aggregates over groups of at least K_SENSORS sensors, the group
    `mobility` raw), `purposed_counts` bound to PURPOSES and raw to the group `mobility`, every
    other table public."""
    out = ["# The UDN certification grants (conformance-tests/README.md), as Polder's policy.\n"]
    mobility_raw = f'  [[dataset.rule]]\n  groups = ["{PROTECTED_GROUP}"]\n  access = "raw"\n'
    for name in tables:
        if name == PROTECTED:
            out.append(f'[[dataset]]\nname = "{name}"{PROTECTED_RULES}')
        elif name == HIDDEN:
            out.append(f'[[dataset]]\nname = "{name}"\nhidden = true\n{mobility_raw}')
        elif name == PERSONAL:
            research = f'  [[dataset.rule]]\n  groups = ["{RESEARCH_GROUP}"]\n  access = "aggregate"\n'
            out.append(f'[[dataset]]\nname = "{name}"\npersonal = true{aggregate_section(K_SENSORS)}'
                       f'{OFFICER_RULE}\n{research}\n{mobility_raw}')  # fmt: skip
        elif name == PURPOSED:
            purposes = ", ".join(f'"{p}"' for p in PURPOSES)
            out.append(f'[[dataset]]\nname = "{name}"\npurposes = [{purposes}]\n{mobility_raw}')
        else:
            out.append(f'[[dataset]]\nname = "{name}"\npublic = true\n')
    return "\n".join(out)


def traffic_counts(path: Path) -> Path:
    """The protected table of the certification grants: hourly counts on four road segments,
    deterministic."""
    import csv
    import datetime as dt

    path.parent.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["hour", "segment_id", "car", "bike", "v85"])
        for h in range(48):
            for s in range(4):
                car = 40 + (h * 7 + s * 13) % 90
                bike = (h * 3 + s * 5) % 25
                writer.writerow([(start + dt.timedelta(hours=h)).isoformat(), f"RS{s:03d}", car, bike,
                                 round(38.0 + (h + s) % 17 * 0.5, 1)])  # fmt: skip
    return path


def sensor_readings(path: Path) -> Path:
    """`air_quality` of the certification fixtures: hourly readings of 13 sensors in six
    neighbourhoods over three days, shaped as Polder's sample (`polder demo-data`), with
    neighbourhoods of one sensor (below K_SENSORS) and of several; deterministic."""
    import csv
    import datetime as dt

    sensors_per_zone = {"BU03440000": 3, "BU03440100": 2, "BU03440002": 1, "BU03440102": 2,
                        "BU03440201": 1, "BU03440300": 4}  # fmt: skip
    sensors = []
    for zone, count in sensors_per_zone.items():
        for _ in range(count):
            i = len(sensors)
            sensors.append((60001 + i, "SDS011" if i % 3 else "SPS30", 40001 + i, zone,
                            round(52.0713 + i * 0.00371, 4), round(5.1034 + i * 0.00293, 4)))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["sensor_id", "sensor_type", "location_id", "lat", "lon", "timestamp",
                         "pm10", "pm2_5", "temperature", "humidity", "neighbourhood_code"])  # fmt: skip
        for h in range(72):
            stamp = (start + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for n, (sid, kind, location, zone, lat, lon) in enumerate(sensors):
                pm25 = round(4.0 + (h * 7 + n * 11) % 230 / 10, 1)
                writer.writerow([sid, kind, location, lat, lon, stamp, round(pm25 * 1.6 + 2.1, 1), pm25,
                                 round(3.0 + (h + n) % 14 * 0.7, 1), round(60.0 + (h * 3 + n) % 39, 1), zone])  # fmt: skip
    return path


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
    return signer.token(default_audience(), sub="udn-conformance", groups=[PROTECTED_GROUP],
                        purpose=PURPOSES[0])  # fmt: skip


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
name = "{PERSONAL}"
personal = true{aggregate_section(k, on_violation)}
  [[dataset.rule]]
  groups = ["{RESEARCH_GROUP}"]
  access = "aggregate"
"""


@pytest.fixture(scope="module")
def sensor_files(polder_bin, remote, data_dir, tmp_path_factory):
    """The sensor readings as a file, so DuckDB sees exactly what the node serves: Polder's
    sample data, or on a node started by hand the certification fixtures' `air_quality`."""
    if remote is not None:
        from .datasets import table_list

        location = table_list(data_dir).get(PERSONAL)
        if location is None:
            pytest.fail(f"the fixtures in {data_dir} lack {PERSONAL}: write them again", pytrace=False)
        return Path(location)
    out = tmp_path_factory.mktemp("sample")
    subprocess.run([polder_bin, "demo-data", "--out", out], check=True, capture_output=True,
                   timeout=120)  # fmt: skip
    return out / "utrecht" / "air_quality.csv"


@pytest.fixture(scope="module")
def aggregate_node(launcher, idp, sensor_files, remote):
    """A node granting the group `research` aggregates of `air_quality` over groups of at
    least K_SENSORS sensors, or the node under certification (its grants do the same)."""
    if remote is not None:
        return remote
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


GUARDED_POLICY = f"""
[[dataset]]
name = "{PERSONAL}"
personal = true
{OFFICER_RULE}"""


DISTRICTS = ["BU03440000", "BU03440100"]


@pytest.fixture(scope="module")
def guarded_node(launcher, idp, polder_bin, sensor_files, tmp_path_factory, remote):
    """A node with GUARDED_POLICY and an audit log, and the log's path; or the node under
    certification (its grants give district officers the same rule) and None."""
    if remote is not None:
        return remote, None
    directory = tmp_path_factory.mktemp("guarded")
    keys = directory / "audit-keys"
    subprocess.run([polder_bin, "token", "keygen", "--out", keys, "--kid", "audit"],
                   check=True, timeout=60)  # fmt: skip
    log_path = directory / "audit.jsonl"
    args = auth_args(idp, GUARDED_POLICY, "guarded")
    args += ["--audit-log", str(log_path), "--audit-key", str(keys / "token-key.pem")]
    node = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    return node, log_path
