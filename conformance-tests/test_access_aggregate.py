"""Aggregate-only access (UDN-AUTH-8): the minimum group size, the shapes refused for what they
could single out, refuse mode, cell-key perturbation, directly and through coordinators.
"""

from __future__ import annotations

import os

import adbc_driver_manager
import pytest

from udn_conformance.access import (  # noqa: F401 - fixtures are used by name
    aggregate_node,
    aggregate_policy,
    auth_args,
    BOTH,
    COORDINATOR_POLICY,
    duckdb_groups,
    idp,
    K_SENSORS,
    PER_NEIGHBOURHOOD,
    query_one,
    refused,
    sensor_files,
    token,
)
from udn_conformance.errors import adbc_grpc_status

@pytest.mark.requirement("UDN-AUTH-8")
def test_aggregate_only_releases_exactly_the_large_groups(aggregate_node, idp, sensor_files):
    released, small = duckdb_groups(sensor_files, K_SENSORS)
    assert released and small, "the sample data must have groups on both sides of k"
    researcher = token(idp, groups=["research"])
    rows, _ = query_one(aggregate_node, researcher, PER_NEIGHBOURHOOD)
    assert dict(rows) == released
    # HAVING cannot bring a small group back.
    rows, _ = query_one(aggregate_node, researcher, PER_NEIGHBOURHOOD + " HAVING count(*) < 1000")
    assert not {zone for zone, _ in rows} & small


# Attacks on aggregate-only data that single queries within the thresholds made possible: each
# reconstructs one sensor or one reading unless its shape is refused.
AGGREGATE_ATTACKS = [
    # Enumerates sensor ids and bisects one exact reading, a query per bound.
    "SELECT count(CASE WHEN sensor_id = 1 AND pm2_5 <= 12.5 THEN 1 END) FROM air_quality",
    "SELECT sum(CASE WHEN sensor_id = 1 THEN pm2_5 ELSE 0 END) FROM air_quality",
    "SELECT neighbourhood_code, avg(pm2_5 * CAST(sensor_id = 1 AS DOUBLE)) FROM air_quality "
    "GROUP BY 1",
    # One sensor's mean, differenced against the whole.
    "SELECT avg(pm2_5) FROM air_quality q WHERE NOT EXISTS (SELECT 1 WHERE q.sensor_id = 1)",
    "SELECT count(*) FROM air_quality q WHERE q.neighbourhood_code IN "
    "(SELECT neighbourhood_code FROM air_quality GROUP BY 1)",
    # A condition on a measure counts the sensors below a bound.
    "SELECT count(*) FROM air_quality WHERE pm2_5 <= 12.5",
    "SELECT neighbourhood_code, count(*) FILTER (WHERE pm2_5 > 25) FROM air_quality GROUP BY 1",
    "SELECT count(*) FROM air_quality a JOIN (VALUES (1)) v(s) ON a.sensor_id = v.s",
]


AGGREGATE_ATTACK_IDS = [
    "conditional count bisects a reading", "conditional sum", "expression inside avg",
    "correlated NOT EXISTS", "subquery in a filter", "filter on a measure",
    "aggregate FILTER on a measure", "join with constant rows",
]


@pytest.mark.requirement("UDN-AUTH-8")
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM air_quality LIMIT 5",
        "SELECT sensor_id, count(*) FROM air_quality GROUP BY sensor_id",
        "SELECT neighbourhood_code, max(pm2_5) FROM air_quality GROUP BY 1",
        "SELECT DISTINCT neighbourhood_code FROM air_quality",
        "SELECT lat, count(*) FROM air_quality GROUP BY lat",
        "EXPLAIN ANALYZE " + PER_NEIGHBOURHOOD,
        PER_NEIGHBOURHOOD.replace("GROUP BY", "WHERE sensor_id <> 1 GROUP BY"),
        *AGGREGATE_ATTACKS,
    ],
    ids=[
        "raw rows", "group by the unit", "max", "distinct", "not a dimension", "explain analyze",
        "differencing by the unit", *AGGREGATE_ATTACK_IDS,
    ],
)


def test_aggregate_only_refuses_what_could_single_out(aggregate_node, idp, sql):
    err = refused(aggregate_node, token(idp, groups=["research"]), sql)
    assert adbc_grpc_status(err) == "PermissionDenied", str(err)
    assert "air_quality" in str(err)


@pytest.mark.requirement("UDN-AUTH-8")
def test_aggregate_only_holds_through_a_coordinator(launcher, idp, aggregate_node, sensor_files):
    args = auth_args(idp, COORDINATOR_POLICY, "aggregate-coordinator", audience="amsterdam")
    coordinator = launcher.spawn(
        [*args, "--peer", f"utrecht={aggregate_node.flight_url}"], name="amsterdam"
    )
    released, _ = duckdb_groups(sensor_files, K_SENSORS)
    t = token(idp, audience=BOTH, groups=["research"])
    rows, _ = query_one(coordinator, t, PER_NEIGHBOURHOOD.replace(
        "FROM air_quality", "FROM utrecht.public.air_quality"))  # fmt: skip
    assert dict(rows) == released
    err = refused(coordinator, t, "SELECT * FROM utrecht.public.air_quality LIMIT 5")
    assert adbc_grpc_status(err) == "PermissionDenied", str(err)
    assert "utrecht" in str(err)
    # The attacks single queries made possible are refused through the coordinator too: the
    # peer applies its own policy to whatever part of the query reaches it.
    for attack in AGGREGATE_ATTACKS:
        sql = attack.replace("FROM air_quality", "FROM utrecht.public.air_quality")
        err = refused(coordinator, t, sql)
        assert adbc_grpc_status(err) == "PermissionDenied", (sql, str(err))


@pytest.mark.requirement("UDN-AUTH-8")
def test_refuse_mode_fails_a_query_with_a_small_group(launcher, idp, sensor_files):
    args = auth_args(idp, aggregate_policy(K_SENSORS, "refuse"), "aggregate-refuse")
    node = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    researcher = token(idp, groups=["research"])
    err = refused(node, researcher, PER_NEIGHBOURHOOD)
    assert adbc_grpc_status(err) == "PermissionDenied", str(err)
    assert "fewer than 2" in str(err)
    # Every sensor type has enough sensors: answered.
    rows, _ = query_one(
        node, researcher, "SELECT sensor_type, count(*) FROM air_quality GROUP BY sensor_type"
    )
    assert len(rows) == 2


def perturbed_policy(k: int) -> str:
    return aggregate_policy(k).replace(
        '  [[dataset.rule]]',
        '  [dataset.aggregate.perturbation]\n  key_file = "cell.key"\n  count_spread = 2\n'
        '  magnitude = 0.5\n  [[dataset.rule]]',
        1,
    )


@pytest.mark.requirement("UDN-AUTH-8")
def test_perturbation_defeats_differencing_directly_and_through_a_coordinator(
    launcher, idp, sensor_files
):
    """With cell-key perturbation, subtracting two allowed answers around a neighbourhood below k
    does not give that neighbourhood's exact values, and asking the same cell again, however
    phrased, gives the same answer. Checked against DuckDB's exact values."""
    import duckdb

    _, _, directory = idp
    if directory is None:
        pytest.skip("starts its own node with its own policy; not possible against the remote "
                    "node in UDN_FLIGHT_URL")
    (directory / "cell.key").write_bytes(os.urandom(32))
    args = auth_args(idp, perturbed_policy(K_SENSORS), "perturbed")
    peer = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    args = auth_args(idp, COORDINATOR_POLICY, "perturbed-coordinator", audience="amsterdam")
    coordinator = launcher.spawn([*args, "--peer", f"utrecht={peer.flight_url}"], name="amsterdam")
    released, small = duckdb_groups(sensor_files, K_SENSORS)
    large = sorted(released)[0]
    con = duckdb.connect()

    def exact(where: str) -> tuple:
        return con.execute(
            f"SELECT count(*), sum(pm2_5) FROM read_csv_auto('{sensor_files}') WHERE {where}"
        ).fetchone()

    t = token(idp, audience=BOTH, groups=["research"])

    def first(node, sql: str) -> tuple:
        rows, _ = query_one(node, t, sql)
        return rows[0]

    for node, table in [(peer, "air_quality"), (coordinator, "utrecht.public.air_quality")]:
        ask = "SELECT count(*), sum(pm2_5) FROM " + table + " WHERE {where}"
        exact_sums = 0
        for target in sorted(small):
            n1, s1 = first(node, ask.format(where=f"neighbourhood_code IN ('{large}', '{target}')"))
            n0, s0 = first(node, ask.format(where=f"neighbourhood_code = '{large}'"))
            n, s = exact(f"neighbourhood_code = '{target}'")
            assert abs(n1 - n0 - n) <= 4, "a difference is off by more than twice the spread"
            exact_sums += abs((s1 - s0) - s) < 1e-6
            # The same cell asked again, reordered: the same answer.
            again = f"neighbourhood_code = '{target}' OR neighbourhood_code = '{large}'"
            assert first(node, ask.format(where=again)) == (n1, s1), (table, target)
        assert exact_sums == 0, f"{exact_sums} differences gave a small group's exact sum"


@pytest.mark.requirement("UDN-AUTH-8")
def test_no_small_group_leaves_through_a_three_node_federation(
    launcher, idp, aggregate_node, sensor_files
):
    """Generated queries at a coordinator over two aggregate-only peers: every group released is
    one DuckDB counts at least k sensors in, or the query is refused."""
    import itertools
    import random

    args = auth_args(idp, aggregate_policy(K_SENSORS), "aggregate-rotterdam", audience="rotterdam")
    rotterdam = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="rotterdam")
    nodes = ["amsterdam", "utrecht", "rotterdam"]
    args = auth_args(idp, COORDINATOR_POLICY, "aggregate-federation", audience="amsterdam")
    coordinator = launcher.spawn(
        [*args, "--peer", f"utrecht={aggregate_node.flight_url}",
         "--peer", f"rotterdam={rotterdam.flight_url}"],
        name="amsterdam",
    )  # fmt: skip
    _, small = duckdb_groups(sensor_files, K_SENSORS)
    t = token(idp, audience=nodes, groups=["research"])

    def large_under(where: str) -> set:
        import duckdb

        return {r[0] for r in duckdb.connect().execute(
            f"SELECT neighbourhood_code FROM read_csv_auto('{sensor_files}') {where} "
            f"GROUP BY 1 HAVING count(DISTINCT sensor_id) >= {K_SENSORS}"
        ).fetchall()}  # fmt: skip

    shapes = [
        "SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1 {having}",
        "SELECT g, v FROM (SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1"
        " {having}) x ORDER BY v LIMIT 50",
        "WITH a AS (SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1 {having})"
        " SELECT g, v FROM a WHERE v IS NOT NULL",
        "SELECT g, v FROM (SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1) u"
        " JOIN (SELECT neighbourhood_code AS h FROM {other} GROUP BY 1) w ON u.g = w.h",
        "SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1 UNION ALL "
        "SELECT neighbourhood_code, {f} FROM {other} {where} GROUP BY 1",
        "SELECT neighbourhood_code AS g, {f} AS v FROM (SELECT * FROM {src}) s {where} GROUP BY 1",
    ]
    functions = ["count(*)", "avg(pm2_5)", "sum(pm10)", "count(DISTINCT sensor_id)"]
    wheres = [
        "", "WHERE pm2_5 > 10", "WHERE sensor_id = 1", "WHERE sensor_type <> 'SDS011'",
        "WHERE sensor_type = 'SDS011'",
    ]
    havings = ["", "HAVING count(*) = 744", "HAVING count(DISTINCT sensor_id) < 2"]
    sources = ["utrecht.public.air_quality", "rotterdam.public.air_quality"]
    cases = list(itertools.product(shapes, functions, wheres, havings, sources))
    answered = 0
    for shape, f, where, having, src in random.Random(7).sample(cases, 40):
        other = sources[1 - sources.index(src)]
        sql = shape.format(f=f, src=src, other=other, where=where, having=having)
        try:
            rows, _ = query_one(coordinator, t, sql)
        except adbc_driver_manager.Error as err:
            assert adbc_grpc_status(err) == "PermissionDenied", (sql, str(err))
            continue
        answered += 1
        groups = {row[0] for row in rows}
        # A filter may shrink a group below k: the released groups are those with at least k
        # sensors among the rows the filter keeps.
        assert groups <= large_under(where), (sql, groups - large_under(where))
        assert not groups & small, sql
    assert answered >= 10, "most generated queries are allowed aggregates"
