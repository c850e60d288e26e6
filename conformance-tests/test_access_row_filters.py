"""Row filters and masks (UDN-AUTH-9): whatever the query, directly or through a coordinator
over two guarded peers, the caller sees the filtered, masked rows only (checked against DuckDB).
"""

from __future__ import annotations

import pytest

from udn_conformance.access import (  # noqa: F401 - fixtures are used by name
    adbc,
    auth_args,
    COORDINATOR_POLICY,
    DISTRICTS,
    guarded_node,
    GUARDED_POLICY,
    idp,
    query_one,
    sensor_files,
    token,
)


def duckdb_one(sql: str):
    import duckdb

    return duckdb.connect().execute(sql).fetchone()


@pytest.mark.requirement("UDN-AUTH-9")
def test_row_filters_and_masks_hold_whatever_the_query(guarded_node, idp, sensor_files):
    node, _ = guarded_node
    officer = token(idp, sub="olga", roles=["district-officer"], groups=DISTRICTS)
    codes = ", ".join(f"'{c}'" for c in DISTRICTS)
    expected_rows, expected_lat = duckdb_one(
        f"SELECT count(*), sum(round(lat, 2)) FROM read_csv_auto('{sensor_files}') "
        f"WHERE neighbourhood_code IN ({codes})"
    )
    assert expected_rows > 0
    rows, _ = query_one(node, officer, "SELECT count(*), sum(lat), count(sensor_id) FROM air_quality")
    count, lat, sensors = rows[0]
    assert count == expected_rows and sensors == 0
    assert lat == pytest.approx(expected_lat, rel=1e-9)
    rows, _ = query_one(node, officer, "SELECT DISTINCT neighbourhood_code FROM air_quality")
    assert sorted(r[0] for r in rows) == DISTRICTS
    # Every column, as a client browsing the table asks for it: masked and filtered too.
    rows, names = query_one(node, officer, "SELECT * FROM air_quality")
    assert len(rows) == expected_rows
    records = [dict(zip(names, row)) for row in rows]
    assert all(r["sensor_id"] is None for r in records)
    assert all(r["lat"] == round(r["lat"], 2) and r["lon"] == round(r["lon"], 2) for r in records)
    assert {r["neighbourhood_code"] for r in records} == set(DISTRICTS)
    # The caller's own filters see masked values and filtered rows only.
    csv = f"read_csv_auto('{sensor_files}')"
    (some_sensor,) = duckdb_one(f"SELECT sensor_id FROM {csv} WHERE neighbourhood_code IN ({codes})")
    (elsewhere,) = duckdb_one(
        f"SELECT neighbourhood_code FROM {csv} WHERE neighbourhood_code NOT IN ({codes})"
    )
    for sql in [
        f"SELECT count(*) FROM air_quality WHERE sensor_id = {some_sensor}",
        "SELECT count(*) FROM air_quality WHERE lat <> round(lat, 2)",
        f"SELECT count(*) FROM air_quality WHERE neighbourhood_code = '{elsewhere}'",
        "SELECT count(*) FROM (SELECT * FROM air_quality ORDER BY pm2_5 DESC LIMIT 100000) t "
        f"WHERE neighbourhood_code NOT IN ({codes})",
    ]:
        rows, _ = query_one(node, officer, sql)
        assert rows == [(0,)], sql
    # Prepared statements bind the caller's parameters; the policy's stay bound to the claims.
    with adbc(node, officer) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM air_quality WHERE neighbourhood_code = ?", (elsewhere,))
        assert cur.fetchall() == [(0,)]
    # A claim value is data, never SQL.
    sly = token(idp, sub="sly", roles=["district-officer"], groups=["x') OR true OR ('"])
    rows, _ = query_one(node, sly, "SELECT count(*) FROM air_quality")
    assert rows == [(0,)]
    nobody = token(idp, sub="nobody", roles=["district-officer"])
    rows, _ = query_one(node, nobody, "SELECT count(*) FROM air_quality")
    assert rows == [(0,)]


@pytest.mark.requirement("UDN-AUTH-9")
def test_row_filters_and_masks_hold_through_a_coordinator(
    launcher, idp, guarded_node, sensor_files
):
    """Generated queries at a coordinator over two guarded peers (three nodes) answer exactly as
    DuckDB does over the filtered, masked rows."""
    import itertools

    import duckdb

    node, _ = guarded_node
    args = auth_args(idp, GUARDED_POLICY, "guarded-rotterdam", audience="rotterdam")
    rotterdam = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="rotterdam")
    nodes = ["amsterdam", "utrecht", "rotterdam"]
    args = auth_args(idp, COORDINATOR_POLICY, "guarded-coordinator", audience="amsterdam")
    coordinator = launcher.spawn(
        [*args, "--peer", f"utrecht={node.flight_url}", "--peer", f"rotterdam={rotterdam.flight_url}"],
        name="amsterdam",
    )  # fmt: skip
    officer = token(idp, audience=nodes, sub="olga", roles=["district-officer"], groups=DISTRICTS)
    codes = ", ".join(f"'{c}'" for c in DISTRICTS)
    oracle = duckdb.connect()
    oracle.execute(
        f"CREATE TABLE visible AS SELECT CAST(NULL AS BIGINT) AS sensor_id, sensor_type, "
        f"round(lat, 2) AS lat, round(lon, 2) AS lon, pm2_5, neighbourhood_code "
        f"FROM read_csv_auto('{sensor_files}') WHERE neighbourhood_code IN ({codes})"
    )
    sources = {
        "utrecht.public.air_quality": "visible",
        "rotterdam.public.air_quality": "visible",
        "(SELECT * FROM utrecht.public.air_quality UNION ALL "
        "SELECT * FROM rotterdam.public.air_quality) AS u": "(SELECT * FROM visible UNION ALL "
        "SELECT * FROM visible) AS u",
    }
    selects = [
        "count(*)", "count(sensor_id)", "count(DISTINCT neighbourhood_code)",
        "round(sum(lat), 4)", "max(lon)", "round(avg(pm2_5), 6)",
    ]  # fmt: skip
    wheres = [
        "", "WHERE sensor_id IS NOT NULL", f"WHERE neighbourhood_code NOT IN ({codes})",
        "WHERE lat <> round(lat, 2)", "WHERE pm2_5 > 10", "WHERE sensor_type = 'SDS011'",
    ]  # fmt: skip
    for (source, expected_source), select, where in itertools.product(sources.items(), selects, wheres):
        sql = f"SELECT {select} FROM {{}} {where}"
        got, _ = query_one(coordinator, officer, sql.format(source))
        [want] = oracle.execute(sql.format(expected_source)).fetchall()
        if isinstance(want[0], float):
            assert got[0][0] == pytest.approx(want[0], rel=1e-9), sql.format(source)
        else:
            assert got[0] == want, sql.format(source)
