"""Federation: peers as catalogs, pushdown, answers equal to one engine, explicit failures.

Three nodes hold the TPC-H tables between them (lineitem and part; orders and customer;
supplier, partsupp, nation and region). A fourth node, the coordinator, federates them with
`--peer`; clients query it over Flight SQL with ADBC, naming tables `<node>.public.<table>`.
`polder sql` is the analyst's client for the same federation.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from udn_conformance import roapi
from udn_conformance.client import describe, expect_error, query
from udn_conformance.compare import assert_same_rows, rows_of_arrow
from udn_conformance.errors import adbc_grpc_status

QUERY_DIR = Path(__file__).parent / "tpch" / "queries"
QUERIES = sorted(QUERY_DIR.glob("q*.sql"))

PLACEMENT = {
    "amsterdam": ["lineitem", "part"],
    "utrecht": ["orders", "customer"],
    "rotterdam": ["supplier", "partsupp", "nation", "region"],
}
HOME = {table: node for node, tables in PLACEMENT.items() for table in tables}
PEER_TIMEOUT_S = 3


def qualify(sql: str) -> str:
    """`sql` with every table of a FROM list or JOIN named `<node>.public.<table>`."""
    pattern = re.compile(
        r"(?i)(\b(?:from|join)\s+|,\s*)(" + "|".join(HOME) + r")\b(?!\s*\()"
    )
    return pattern.sub(lambda m: f"{m.group(1)}{HOME[m.group(2).lower()]}.public.{m.group(2)}", sql)


@pytest.fixture(scope="module")
def cities(launcher, tpch):
    """The three nodes holding the TPC-H tables, by name."""
    return {
        name: launcher.spawn(
            [arg for t in tables for arg in ("--table", f"{t}={tpch[t]}")], name=name
        )
        for name, tables in PLACEMENT.items()
    }


def peer_args(nodes, flag="--peer") -> list[str]:
    return [arg for name, n in nodes.items() for arg in (flag, f"{name}={n.flight_url}")]


def federation_config(tmp_path: Path, peer_timeout_s: int = PEER_TIMEOUT_S) -> Path:
    path = tmp_path / "coordinator.toml"
    path.write_text(f'[federation]\npeer_timeout = "{peer_timeout_s}s"\nrefresh_interval = "5s"\n')
    return path


@pytest.fixture(scope="module")
def coordinator(launcher, cities, tmp_path_factory):
    config = federation_config(tmp_path_factory.mktemp("coordinator"))
    return launcher.spawn(["--config", str(config), *peer_args(cities)], name="coordinator")


@pytest.fixture(scope="module")
def coord_conn(coordinator):
    conn = coordinator.connect()
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def tpch_ref(tpch):
    from udn_conformance.reference import Reference

    return Reference(tpch)


def explain(conn, sql: str) -> str:
    table = query(conn, "EXPLAIN " + sql)
    plans = dict(zip(table.column("plan_type").to_pylist(), table.column("plan").to_pylist()))
    return plans["physical_plan"]


def remote_parts(physical_plan: str) -> dict[str, str]:
    """Peer name -> SQL sent to it, from the `VirtualExecutionPlan` lines of a physical plan."""
    parts = {}
    for match in re.finditer(r"VirtualExecutionPlan name=(\S+) .*?base_sql=(.*)$", physical_plan, re.M):
        assert match.group(1) not in parts, f"two remote parts for {match.group(1)}:\n{physical_plan}"
        parts[match.group(1)] = match.group(2)
    return parts


@pytest.mark.requirement("UDN-FED-1")
def test_each_peer_is_a_catalog_with_its_tables_and_schemas(coord_conn, cities):
    objects = coord_conn.adbc_get_objects(depth="columns").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    for name, node in cities.items():
        assert name in catalogs, f"catalog {name} missing: {sorted(catalogs)}"
        tables = {
            t["table_name"]: [c["column_name"] for c in t["table_columns"] or []]
            for s in catalogs[name]["catalog_db_schemas"]
            if s["db_schema_name"] == "public"
            for t in s["db_schema_tables"]
        }
        assert sorted(tables) == sorted(PLACEMENT[name])
        with node.connect() as conn:
            for table, columns in tables.items():
                own = query(conn, f"SELECT * FROM {table} LIMIT 0").schema
                assert columns == own.names, f"{name}.{table}"
                remote = query(coord_conn, f"SELECT * FROM {name}.public.{table} LIMIT 0").schema
                assert remote == own, f"{name}.{table}: {remote} != {own}"


@pytest.mark.beyond_spec("suite self-check: table names are qualified, column aliases are not")
def test_qualify_rewrites_tables_not_aliases():
    sql = "select nation, o_year from part, nation n1 join region on true group by nation"
    assert qualify(sql) == (
        "select nation, o_year from amsterdam.public.part, rotterdam.public.nation n1 "
        "join rotterdam.public.region on true group by nation"
    )


@pytest.mark.parametrize("path", QUERIES, ids=[q.stem for q in QUERIES])
@pytest.mark.requirement("UDN-FED-3")
def test_tpch_over_three_nodes_matches_duckdb(coord_conn, tpch_ref, path):
    sql = path.read_text()
    expected = tpch_ref.rows(sql)
    table = query(coord_conn, qualify(sql))
    assert table.column_names == tpch_ref.columns(sql), f"{path.stem} column names"
    assert_same_rows(rows_of_arrow(table), expected, context=path.stem)


@pytest.mark.requirement("UDN-FED-2")
def test_a_subtree_on_one_node_runs_there_as_one_query(coord_conn):
    sql = (
        "SELECT o_orderpriority, count(*) AS n FROM utrecht.public.orders o "
        "JOIN utrecht.public.customer c ON o.o_custkey = c.c_custkey "
        "WHERE c.c_mktsegment = 'BUILDING' GROUP BY o_orderpriority ORDER BY n DESC LIMIT 3"
    )
    plan = explain(coord_conn, sql)
    parts = remote_parts(plan)
    assert list(parts) == ["utrecht"], plan
    remote = parts["utrecht"].upper()
    for piece in ("JOIN", "GROUP BY", "ORDER BY", "LIMIT 3", "'BUILDING'"):
        assert piece in remote, f"{piece} not pushed to utrecht: {parts['utrecht']}"
    # Nothing but the remote part (and its schema check) runs on the coordinator.
    for local in ("HashJoinExec", "AggregateExec", "SortExec"):
        assert local not in plan, plan


@pytest.mark.requirement("UDN-FED-2")
def test_scans_push_projection_filters_and_limits_to_each_node(coord_conn):
    sql = (
        "SELECT l.l_orderkey, o.o_orderdate FROM amsterdam.public.lineitem l "
        "JOIN utrecht.public.orders o ON l.l_orderkey = o.o_orderkey "
        "WHERE l.l_quantity > 45 AND o.o_orderstatus = 'F'"
    )
    parts = remote_parts(explain(coord_conn, sql))
    assert sorted(parts) == ["amsterdam", "utrecht"]
    assert "l_quantity > 45" in parts["amsterdam"] and "*" not in parts["amsterdam"]
    assert "o_orderstatus = 'F'" in parts["utrecht"] and "*" not in parts["utrecht"]
    assert "l_comment" not in parts["amsterdam"], "unused columns must not be fetched"
    limited = remote_parts(explain(coord_conn, "SELECT l_orderkey FROM amsterdam.public.lineitem LIMIT 7"))
    assert "LIMIT 7" in limited["amsterdam"].upper()


UNION_AGGREGATE = (
    "SELECT k, count(*) AS n, sum(v) AS s, avg(v) AS a, min(v) AS lo, max(v) AS hi FROM ("
    "SELECT n_regionkey AS k, n_nationkey AS v FROM {nation} "
    "UNION ALL SELECT c_nationkey % 5, c_custkey FROM {customer} "
    "UNION ALL SELECT p_size % 5, p_size FROM {part} WHERE p_size > 10"
    ") u GROUP BY k ORDER BY k"
)


@pytest.mark.requirement("UDN-FED-2", "UDN-FED-3")
def test_an_aggregate_over_nodes_is_computed_partially_on_each(coord_conn, tpch_ref):
    federated = UNION_AGGREGATE.format(
        nation="rotterdam.public.nation",
        customer="utrecht.public.customer",
        part="amsterdam.public.part",
    )
    parts = remote_parts(explain(coord_conn, federated))
    assert sorted(parts) == ["amsterdam", "rotterdam", "utrecht"], parts
    for peer, remote in parts.items():
        assert "GROUP BY" in remote.upper(), f"{peer} was not sent its partial aggregate: {remote}"
    local = UNION_AGGREGATE.format(nation="nation", customer="customer", part="part")
    got = rows_of_arrow(query(coord_conn, federated))
    assert_same_rows(got, tpch_ref.rows(local), context="partial aggregates")


@pytest.mark.requirement("UDN-FED-3")
@pytest.mark.parametrize(
    "shape",
    [
        "SELECT v.r, count(*) AS n FROM {nation} x JOIN (VALUES (0), (1), (7)) v(r) "
        "ON x.n_regionkey = v.r GROUP BY v.r",
        "WITH wanted(r) AS (VALUES (2), (3)) SELECT count(*) AS n FROM {nation} "
        "WHERE n_regionkey IN (SELECT r FROM wanted)",
        "SELECT count(*) AS n FROM {nation} x CROSS JOIN (VALUES (1), (2)) v(k) "
        "JOIN {customer} c ON c.c_nationkey = x.n_nationkey WHERE v.k = 2",
    ],
    ids=["join", "cte-in-subquery", "cross-join-across-peers"],
)
def test_inline_rows_meet_peers_tables(coord_conn, tpch_ref, shape):
    """Inline rows (VALUES) joined with peers' tables: answered as over the local tables."""
    federated = shape.format(nation="rotterdam.public.nation", customer="utrecht.public.customer")
    local = shape.format(nation="nation", customer="customer")
    got = rows_of_arrow(query(coord_conn, federated))
    assert_same_rows(got, tpch_ref.rows(local), context="inline rows")


@pytest.mark.requirement("UDN-FED-3")
def test_parameters_bind_in_federated_queries(coord_conn, tpch_ref):
    sql = "SELECT count(*) FROM {} WHERE l_quantity > ?"
    got = query(coord_conn, sql.format("amsterdam.public.lineitem"), (45,))
    assert rows_of_arrow(got) == tpch_ref.rows(sql.format("lineitem"), (45,))


# --- failures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chaos_peers(cities, tmp_path_factory):
    """Misbehaving peers in front of the amsterdam node, one per failure mode."""
    procs = {}
    log = tmp_path_factory.mktemp("chaos")
    for mode in ("error", "hang", "exit", "drop-column"):
        err = open(log / f"{mode}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "udn_conformance.chaos_peer", "--upstream",
             cities["amsterdam"].flight_url, "--mode", mode, "--after", "2"],
            stdout=subprocess.PIPE, stderr=err, cwd=Path(__file__).parent, text=True,
        )
        line = proc.stdout.readline().strip()
        assert line.startswith("listening "), f"chaos peer {mode} did not start: {line!r}"
        procs[mode] = (proc, line.split()[1])
    yield {mode: url for mode, (_, url) in procs.items()}
    for proc, _ in procs.values():
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def chaos_coordinator(launcher, cities, chaos_peers, tmp_path_factory):
    config = federation_config(tmp_path_factory.mktemp("chaos-coordinator"))
    peers = {mode.replace("-", "_"): url for mode, url in chaos_peers.items()}
    args = ["--config", str(config), "--peer", f"utrecht={cities['utrecht'].flight_url}"]
    args += [a for name, url in peers.items() for a in ("--peer", f"{name}={url}")]
    return launcher.spawn(args, name="coordinator")


FAILURES = {
    # mode: (gRPC status, words the message must hold)
    "error": ("Unavailable", ["peer 'error'", "injected failure"]),
    "hang": ("DeadlineExceeded", ["peer 'hang'", f"within {PEER_TIMEOUT_S} s"]),
    "exit": ("Unavailable", ["peer 'exit'"]),
    "drop_column": ("Unavailable", ["peer 'drop_column'", "expected schema", "columns"]),
}


@pytest.mark.parametrize("peer", list(FAILURES))
@pytest.mark.requirement("UDN-FED-4", "UDN-FED-5")
def test_a_failing_peer_fails_the_query_naming_it_and_the_node_keeps_serving(
    chaos_coordinator, peer
):
    status, words = FAILURES[peer]
    with chaos_coordinator.connect() as conn:
        started = time.monotonic()
        # Every column of lineitem, so that the answer spans several batches.
        err = expect_error(conn, f"SELECT * FROM {peer}.public.lineitem")
        elapsed = time.monotonic() - started
        assert adbc_grpc_status(err) == status, describe(err)
        for word in words:
            assert word in str(err), describe(err)
        assert elapsed < PEER_TIMEOUT_S + 20, f"took {elapsed:.1f} s"
        assert query(conn, "SELECT count(*) AS n FROM utrecht.public.orders").column("n")[0].as_py() > 0
    assert chaos_coordinator.alive()


@pytest.mark.requirement("UDN-FED-4")
def test_a_peer_down_at_startup_is_named_and_the_rest_still_works(launcher, cities, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    config = federation_config(tmp_path)
    node = launcher.spawn(
        ["--config", str(config), "--peer", f"ghost=grpc://127.0.0.1:{free}",
         "--peer", f"utrecht={cities['utrecht'].flight_url}"],
        name="coordinator",
    )
    with node.connect() as conn:
        err = expect_error(conn, "SELECT * FROM ghost.public.anything")
        assert "peer 'ghost' is unavailable" in str(err), describe(err)
        assert query(conn, "SELECT count(*) AS n FROM utrecht.public.customer").num_rows == 1


@pytest.fixture
def silent_peer(tmp_path):
    """A peer that accepts TCP connections and never answers (not even HTTP/2's handshake)."""
    err = open(tmp_path / "silent.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "udn_conformance.chaos_peer", "--mode", "silent"],
        stdout=subprocess.PIPE, stderr=err, cwd=Path(__file__).parent, text=True,
    )
    line = proc.stdout.readline().strip()
    assert line.startswith("listening "), f"silent peer did not start: {line!r}"
    yield line.split()[1]
    proc.kill()
    proc.wait()


@pytest.mark.requirement("UDN-FED-4", "UDN-OPS-2")
def test_a_silent_peer_does_not_hold_the_coordinators_start(
    launcher, cities, tpch, silent_peer, tmp_path
):
    import requests

    # A peer timeout far longer than the start may take: the start must not wait for it.
    from udn_conformance.node import with_catalog

    peer_timeout_s = 30
    config = federation_config(tmp_path, peer_timeout_s=peer_timeout_s)
    config.write_text(with_catalog(config.read_text()))  # it serves a table of its own
    started = time.monotonic()
    node = launcher.spawn(
        ["--config", str(config), "--table", f"nation={tpch['nation']}",
         "--peer", f"silent={silent_peer}", "--peer", f"utrecht={cities['utrecht'].flight_url}"],
        name="coordinator",
        wait_peers=["utrecht"],
    )
    elapsed = time.monotonic() - started
    assert elapsed < peer_timeout_s / 3, f"ready after {elapsed:.1f} s"
    ready = requests.get(f"{node.http_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["peers"] == {"silent": "discovering", "utrecht": "discovered"}, ready.text
    with node.connect() as conn:
        assert query(conn, "SELECT count(*) AS n FROM nation").column("n")[0].as_py() == 25
        asked = time.monotonic()
        err = expect_error(conn, "SELECT * FROM silent.public.lineitem")
        assert time.monotonic() - asked < peer_timeout_s / 3
        assert adbc_grpc_status(err) == "Unavailable", describe(err)
        assert "peer 'silent'" in str(err) and "not discovered yet" in str(err), describe(err)
        assert query(conn, "SELECT count(*) AS n FROM utrecht.public.customer").num_rows == 1
    assert node.alive()


@pytest.mark.parametrize(
    "peer, message",
    [
        ("Utrecht=grpc://127.0.0.1:1", "lower-case SQL identifier"),
        ("utrecht=ftp://127.0.0.1:1", "grpc://"),
        ("utrecht", "NAME=URL"),
        ("coordinator=grpc://127.0.0.1:1", "name of this node"),
    ],
)
@pytest.mark.beyond_spec("Polder's configuration checks")
def test_bad_peer_configuration_stops_the_start(polder_bin, tmp_path, peer, message):
    from udn_conformance.node import run_expecting_exit

    code, stderr = run_expecting_exit(
        [str(polder_bin), "serve", "--name", "coordinator", "--flight", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--peer", peer],
        tmp_path,
    )
    assert code != 0 and message in stderr, stderr


# --- polder sql -----------------------------------------------------------------------------


def polder_sql(polder_bin, cities, *args, timeout=120) -> subprocess.CompletedProcess:
    cmd = [str(polder_bin), "sql", *peer_args(cities, "--node"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("path", QUERIES, ids=[q.stem for q in QUERIES])
@pytest.mark.beyond_spec("polder sql, the analyst's client, with session views over the nodes")
def test_polder_sql_script_with_views_matches_duckdb(polder_bin, cities, tpch_ref, tmp_path, path):
    name = path.stem
    sql = path.read_text()
    views = "".join(f"CREATE VIEW {t} AS SELECT * FROM {n}.public.{t};\n" for t, n in HOME.items())
    script = tmp_path / "script.sql"
    script.write_text(views + sql)
    out = tmp_path / "answer.parquet"
    done = polder_sql(polder_bin, cities, "-f", str(script), "--format", "parquet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert table.column_names == tpch_ref.columns(sql)
    assert_same_rows(rows_of_arrow(table), tpch_ref.rows(sql), context=name)


@pytest.mark.beyond_spec("polder sql, the analyst's client")
def test_polder_sql_formats_and_errors(polder_bin, cities, tpch_ref, tmp_path):
    sql = "SELECT r_regionkey, r_name FROM rotterdam.public.region ORDER BY r_regionkey"
    expected = tpch_ref.rows("SELECT r_regionkey, r_name FROM region ORDER BY r_regionkey")
    csv = polder_sql(polder_bin, cities, "-c", sql, "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.strip().splitlines()
    assert lines[0] == "r_regionkey,r_name"
    assert [tuple(line.split(",")) for line in lines[1:]] == [(str(int(k)), n) for k, n in expected]
    json_out = polder_sql(polder_bin, cities, "-c", sql, "--format", "json")
    assert json_out.returncode == 0, json_out.stderr
    assert json_out.stdout.count("\n") == len(expected)
    table = polder_sql(polder_bin, cities, "-c", sql, "--max-rows", "2")
    assert "5 rows (first 2 shown)" in table.stdout, table.stdout
    bad = polder_sql(polder_bin, cities, "-c", "SELECT * FROM rotterdam.public.nope")
    assert bad.returncode != 0 and "not_found" in bad.stderr, bad.stderr
    # A failed query leaves no half-written Parquet file behind.
    out = tmp_path / "failed.parquet"
    failed = polder_sql(
        polder_bin, cities, "-c", "SELECT CAST(r_name AS INT) FROM rotterdam.public.region",
        "--format", "parquet", "-o", str(out),
    )
    assert failed.returncode != 0 and not out.exists(), failed.stderr
    explain_out = polder_sql(
        polder_bin, cities, "-c", "EXPLAIN SELECT count(*) FROM rotterdam.public.nation", "--max-rows", "100"
    )
    assert "name=rotterdam" in explain_out.stdout and "base_sql=" in explain_out.stdout


@pytest.mark.beyond_spec("polder demo, the README's first command")
def test_polder_demo_once_prints_answers_from_three_cities(polder_bin):
    done = subprocess.run(
        [str(polder_bin), "demo", "--once", "--flight-port", "0", "--http-port", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for city in ("amsterdam", "utrecht", "rotterdam"):
        assert f"| {city}" in done.stdout, done.stdout[-3000:]
    assert "24 rows" in done.stdout  # one row per hour of the day


# --- another vendor's Flight SQL server as a peer ---------------------------------------------


@pytest.fixture(scope="module")
def roapi_peer(tpch, tmp_path_factory):
    """roapi (a DataFusion-based Flight SQL server, from PyPI) serving three TPC-H tables."""
    tables = [f"{t}={tpch[t]}" for t in ("nation", "region", "supplier")]
    with roapi.serving(tables, tmp_path_factory.mktemp("roapi") / "roapi.log") as (flight, _):
        yield flight


@pytest.mark.requirement("UDN-FED-2", "UDN-FED-3")
def test_roapi_is_a_peer_with_pushdown(launcher, cities, roapi_peer, tpch_ref, tmp_path):
    """A coordinator federates roapi next to Polder nodes: the roapi-only part runs on roapi as
    one query, and the answer across roapi and a Polder node matches DuckDB."""
    node = launcher.spawn(
        ["--config", str(federation_config(tmp_path)), "--peer", f"ro={roapi_peer}",
         "--peer", f"utrecht={cities['utrecht'].flight_url}"],
        name="coordinator",
    )
    local = (
        "SELECT n.n_name, count(*) AS customers, sum(c.c_acctbal) AS balance "
        "FROM {nation} n JOIN {region} r ON n.n_regionkey = r.r_regionkey "
        "JOIN {customer} c ON c.c_nationkey = n.n_nationkey "
        "WHERE r.r_name = 'EUROPE' GROUP BY n.n_name"
    )
    federated = local.format(
        nation="ro.public.nation", region="ro.public.region", customer="utrecht.public.customer"
    )
    with node.connect() as conn:
        parts = remote_parts(explain(conn, federated))
        assert sorted(parts) == ["ro", "utrecht"], parts
        assert "JOIN" in parts["ro"].upper() and "'EUROPE'" in parts["ro"], parts["ro"]
        got = query(conn, federated)
    expected = tpch_ref.rows(local.format(nation="nation", region="region", customer="customer"))
    assert_same_rows(rows_of_arrow(got), expected, context="roapi + utrecht")


@pytest.mark.beyond_spec("Polder's planner estimates: row counts of peers' tables")
def test_row_counts_of_peers_feed_the_planners_estimates(polder_bin, cities, tpch_ref, tmp_path):
    nations = tpch_ref.rows("SELECT count(*) FROM nation")[0][0]
    script = tmp_path / "stats.sql"
    script.write_text(
        "SET datafusion.explain.show_statistics = true;\n"
        "EXPLAIN SELECT * FROM rotterdam.public.nation;\n"
        "EXPLAIN SELECT * FROM rotterdam.public.nation WHERE n_regionkey = 1;\n"
    )
    done = polder_sql(polder_bin, cities, "-f", str(script), "--format", "csv")
    assert done.returncode == 0, done.stderr
    remote = [line for line in done.stdout.splitlines() if "VirtualExecutionPlan" in line]
    assert len(remote) == 2, done.stdout
    # The whole table: its row count; with one filter: a fifth of it (DataFusion's default
    # selectivity), both as estimates.
    assert f"Rows=Inexact({int(nations)})" in remote[0], remote[0]
    assert f"Rows=Inexact({int(nations) // 5})" in remote[1], remote[1]
