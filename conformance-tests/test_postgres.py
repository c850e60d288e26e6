"""Polder's PostgreSQL/PostGIS source (`format = "postgres"`), against a real PostgreSQL with
PostGIS (`scripts/start-postgres`, which `.ci/run` runs after installing Debian's packages):
tables and views served with the answers PostgreSQL itself gives, geometry as WKB with the
column's SRID in the GeoArrow metadata, spatial joins equal to PostGIS's own, conditions and
limits sent to PostgreSQL (shown by `EXPLAIN` and by the statements the server logged), the
password never in the node's output, and failures (a database down at startup, a connection
killed during a query) as errors naming the source.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from udn_conformance import paths, wkb
from udn_conformance.client import expect_error, query
from udn_conformance.compare import assert_same_rows
from udn_conformance.errors import adbc_grpc_status
from udn_conformance.node import run_expecting_exit, with_catalog

pytestmark = [pytest.mark.spawns_node, pytest.mark.beyond_spec("Polder's PostgreSQL/PostGIS source")]

PASSWORD_ENV = "UDN_TEST_PG_PASSWORD"


@pytest.fixture(scope="module")
def pg():
    """The server's settings: from the environment, else started with scripts/start-postgres."""
    settings = {k: os.environ[k] for k in ("UDN_POSTGRES_URL", "UDN_POSTGRES_PASSWORD", "UDN_POSTGRES_LOG") if k in os.environ}
    if len(settings) < 3:
        script = (paths.REPO or Path(".")) / "scripts" / "start-postgres"
        done = subprocess.run([str(script)], capture_output=True, text=True) if script.exists() else None
        if done is None or done.returncode != 0:
            reason = (done.stderr.strip() if done else "scripts/start-postgres not found")
            if os.environ.get("CI"):
                pytest.fail(f"CI must test the postgres source against a real server: {reason}", pytrace=False)
            pytest.skip(f"no PostgreSQL with PostGIS here: {reason}")
        for line in done.stdout.splitlines():
            key, _, value = line.partition("=")
            settings[key] = value.strip("'")
    return settings


@pytest.fixture(scope="module")
def db(pg):
    import psycopg

    url = pg["UDN_POSTGRES_URL"].replace("postgresql://polder@", f"postgresql://polder:{pg['UDN_POSTGRES_PASSWORD']}@")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS gemeente CASCADE")
        conn.execute("CREATE SCHEMA gemeente")
        conn.execute(
            "CREATE TABLE gemeente.buurten (code text PRIMARY KEY, naam text NOT NULL, inwoners integer, "
            "geom geometry(Polygon, 28992))"
        )
        conn.execute(
            "CREATE TABLE gemeente.metingen (id bigint PRIMARY KEY, sensor text, gemeten timestamptz, "
            "pm25 double precision, plek geometry(Point, 28992))"
        )
        for i in range(6):
            x, y = 130_000 + 1_000 * i, 455_000 + 500 * (i % 3)
            conn.execute(
                "INSERT INTO gemeente.buurten VALUES (%s, %s, %s, ST_MakeEnvelope(%s, %s, %s, %s, 28992))",
                (f"BU0344{i:04d}", f"Buurt {i}", 1000 + 137 * i, x, y, x + 900, y + 900),
            )
        conn.execute(
            "INSERT INTO gemeente.metingen SELECT g, 'sensor-' || (g % 7), "
            "TIMESTAMPTZ '2024-11-01 00:00+00' + g * INTERVAL '10 minutes', (g % 53) / 2.0, "
            "ST_SetSRID(ST_MakePoint(130000 + (g * 37) % 6000, 455000 + (g * 53) % 1900), 28992) "
            "FROM generate_series(1, 3000) g"
        )
        conn.execute(
            "CREATE VIEW gemeente.drukke_buurten AS SELECT code, naam, geom FROM gemeente.buurten WHERE inwoners > 1300"
        )
        # A view that takes about 6 s: 2 ms per row.
        conn.execute(
            "CREATE FUNCTION gemeente.traag(x double precision) RETURNS double precision "
            "AS 'SELECT pg_sleep(0.002); SELECT x' LANGUAGE sql VOLATILE"
        )
        conn.execute("CREATE VIEW gemeente.traag AS SELECT id, gemeente.traag(pm25) AS pm25 FROM gemeente.metingen")
        yield conn


def _config(pg, tables: dict[str, str], optional: bool = False, location: str | None = None) -> str:
    out = []
    for name, table in tables.items():
        out += [
            "[[tables]]", f'name = "{name}"', f'location = "{location or pg["UDN_POSTGRES_URL"]}"',
            'format = "postgres"', f"optional = {'true' if optional else 'false'}",
            "[tables.postgres]", f'table = "{table}"', f'password_env = "{PASSWORD_ENV}"', 'sslmode = "disable"',
            "pool_size = 2", "",
        ]
    return with_catalog("\n".join(out))


@pytest.fixture(scope="module")
def node(launcher, pg, db, tmp_path_factory):
    config = tmp_path_factory.mktemp("postgres") / "node.toml"
    config.write_text(_config(pg, {
        "buurten": "gemeente.buurten", "metingen": "gemeente.metingen",
        "drukke_buurten": "gemeente.drukke_buurten", "traag": "gemeente.traag",
    }), encoding="utf-8")
    return launcher.spawn(["--config", str(config)], env={PASSWORD_ENV: pg["UDN_POSTGRES_PASSWORD"]})


def _rows(conn, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in query(conn, sql).to_pylist()]


def test_tables_and_views_answer_as_postgresql_does(node, db):
    cases = [
        ("SELECT sensor, count(*), sum(pm25), min(gemeten) FROM metingen GROUP BY sensor ORDER BY sensor",
         "SELECT sensor, count(*), sum(pm25), min(gemeten) FROM gemeente.metingen GROUP BY sensor ORDER BY sensor"),
        ("SELECT code, d.naam, inwoners FROM drukke_buurten d JOIN buurten b USING (code) ORDER BY code",
         "SELECT code, d.naam, inwoners FROM gemeente.drukke_buurten d JOIN gemeente.buurten b USING (code) ORDER BY code"),
    ]
    with node.connect() as conn:
        for ours, theirs in cases:
            want = [tuple(r) for r in db.execute(theirs).fetchall()]
            assert want, theirs
            assert_same_rows(_rows(conn, ours), want, context=ours)


def test_geometry_is_wkb_with_the_columns_srid(node, db):
    with node.connect() as conn:
        table = query(conn, "SELECT code, geom FROM buurten ORDER BY code")
        srid = query(conn, "SELECT ST_SRID(geom) AS s FROM buurten LIMIT 1").to_pylist()[0]["s"]
    field = table.schema.field("geom")
    assert field.metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert b"EPSG:28992" in field.metadata[b"ARROW:extension:metadata"]
    assert srid == 28992
    want = {code: bytes(g) for code, g in db.execute("SELECT code, ST_AsBinary(geom) FROM gemeente.buurten")}
    for row in table.to_pylist():
        assert row["geom"] == want[row["code"]], "not the plain WKB PostGIS gives"
        assert wkb.decode(row["geom"])["type"] == "Polygon"


def test_spatial_joins_equal_postgis(node, db):
    ours = (
        "SELECT b.code, count(*) AS n, round(avg(m.pm25), 6) AS pm25 FROM buurten b JOIN metingen m "
        "ON ST_Contains(b.geom, m.plek) GROUP BY b.code ORDER BY b.code"
    )
    theirs = (
        "SELECT b.code, count(*), round(avg(m.pm25)::numeric, 6) FROM gemeente.buurten b JOIN gemeente.metingen m "
        "ON ST_Contains(b.geom, m.plek) GROUP BY b.code ORDER BY b.code"
    )
    with node.connect() as conn:
        got = _rows(conn, ours)
        near = query(
            conn,
            "SELECT count(*) AS n FROM metingen WHERE ST_DWithin(plek, ST_SetSRID(ST_Point(131000, 455500), 28992), 250)",
        ).to_pylist()[0]["n"]
    want = [(c, n, float(p)) for c, n, p in db.execute(theirs).fetchall()]
    assert got == want and want
    assert near == db.execute(
        "SELECT count(*) FROM gemeente.metingen WHERE ST_DWithin(plek, ST_SetSRID(ST_Point(131000, 455500), 28992), 250)"
    ).fetchone()[0]


def test_conditions_and_limits_reach_postgresql(node, pg):
    sql = "SELECT id, pm25 FROM metingen WHERE pm25 > 20 AND sensor = 'sensor-3' LIMIT 7"
    log = Path(pg["UDN_POSTGRES_LOG"])
    before = log.stat().st_size
    with node.connect() as conn:
        rows = query(conn, sql).to_pylist()
        plan = "\n".join(r["plan"] for r in query(conn, "EXPLAIN " + sql).to_pylist())
    assert len(rows) == 7 and all(r["pm25"] > 20 for r in rows)
    assert "pm25" in plan and "sensor-3" in plan and "LIMIT 7" in plan, plan
    with open(log, "rb") as f:
        f.seek(before)
        statements = f.read().decode(errors="replace")
    sent = [
        s for s in re.findall(r"(?:statement|execute [^:]*): (SELECT[^\n]*metingen[^\n]*)", statements)
        if "sensor-3" in s
    ]
    assert sent, statements[-2000:]
    assert "pm25" in sent[0] and "> 20" in sent[0] and "LIMIT 7" in sent[0], sent


def test_spatial_conditions_stay_with_the_node(node, pg):
    """PostGIS would read the node's WKB constant as bytea: the condition is not sent."""
    log = Path(pg["UDN_POSTGRES_LOG"])
    before = log.stat().st_size
    with node.connect() as conn:
        n = query(
            conn,
            "SELECT count(*) AS n FROM buurten WHERE ST_Intersects(geom, ST_GeomFromText('POINT(130450 455450)'))",
        ).to_pylist()[0]["n"]
    assert n == 1
    with open(log, "rb") as f:
        f.seek(before)
        assert "st_intersects" not in f.read().decode(errors="replace").lower()


def test_the_password_is_never_in_the_nodes_output(node, pg):
    with node.connect() as conn:
        query(conn, "SELECT count(*) FROM buurten")
    requests.get(f"{node.http_url}/catalog", timeout=30)
    assert pg["UDN_POSTGRES_PASSWORD"] not in node.stderr_text()
    assert pg["UDN_POSTGRES_PASSWORD"] not in requests.get(f"{node.http_url}/catalog", timeout=30).text


def test_a_connection_killed_during_a_query_fails_it_naming_the_source(node, db):
    errors = []

    def run():
        with node.connect() as conn:
            errors.append(expect_error(conn, "SELECT sum(pm25) FROM traag"))

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    killed = 0
    while time.monotonic() < deadline and not killed:
        time.sleep(0.3)
        killed = sum(
            1 for (ok,) in db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE '%traag%' "
                "AND pid <> pg_backend_pid() AND usename = 'polder'"
            ).fetchall() if ok
        )
    thread.join(60)
    assert killed, "the node's query never reached PostgreSQL"
    assert errors, "the query was answered although its connection was killed"
    err = errors[0]
    assert adbc_grpc_status(err) == "Unavailable", err
    assert "PostgreSQL source 'traag'" in str(err), err
    with node.connect() as conn:
        assert query(conn, "SELECT count(*) AS n FROM buurten").to_pylist()[0]["n"] == 6


def test_a_database_down_at_startup(launcher, polder_bin, pg, tmp_path):
    down = re.sub(r":\d+/", ":9/", pg["UDN_POSTGRES_URL"])
    mandatory = tmp_path / "mandatory.toml"
    mandatory.write_text(_config(pg, {"buurten": "gemeente.buurten"}, location=down), encoding="utf-8")
    env = dict(os.environ, **{PASSWORD_ENV: pg["UDN_POSTGRES_PASSWORD"]})
    code, stderr = run_expecting_exit([str(polder_bin), "serve", "--config", str(mandatory)], tmp_path, env=env)
    assert code != 0 and "buurten" in stderr and "cannot connect to PostgreSQL" in stderr, stderr[-1500:]
    assert pg["UDN_POSTGRES_PASSWORD"] not in stderr
    optional = tmp_path / "optional.toml"
    optional.write_text(_config(pg, {"buurten": "gemeente.buurten"}, optional=True, location=down), encoding="utf-8")
    node = launcher.spawn(["--config", str(optional)], env={PASSWORD_ENV: pg["UDN_POSTGRES_PASSWORD"]})
    try:
        ready = requests.get(f"{node.http_url}/readyz", timeout=30).json()
        assert "cannot connect to PostgreSQL" in ready["skipped"]["buurten"], ready
    finally:
        node.stop()


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c: c.replace('password_env = "UDN_TEST_PG_PASSWORD"', 'password_env = "UDN_NOT_SET_ANYWHERE"'),
         "UDN_NOT_SET_ANYWHERE, which is not set"),
        (lambda c: c.replace("postgresql://polder@", "postgresql://polder:secret@"), "the location holds a password"),
        (lambda c: c.replace('table = "gemeente.buurten"', 'table = "gemeente.nope"'), "cannot read table gemeente.nope"),
    ],
)
def test_bad_settings_are_refused(polder_bin, pg, db, tmp_path, change, needle):
    config = tmp_path / "node.toml"
    config.write_text(change(_config(pg, {"buurten": "gemeente.buurten"})), encoding="utf-8")
    env = dict(os.environ, **{PASSWORD_ENV: pg["UDN_POSTGRES_PASSWORD"]})
    code, stderr = run_expecting_exit([str(polder_bin), "serve", "--config", str(config)], tmp_path, env=env)
    assert code != 0 and needle in stderr, stderr[-1500:]
    assert "secret" not in stderr or "holds a password" in stderr

