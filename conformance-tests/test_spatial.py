"""Spatial SQL (docs/spec.md, section 9): the Simple Features functions agree with shapely
(GEOS) on the same WKB (UDN-GEO-1), CRSs and `ST_Transform` (UDN-GEO-2), and spatial
predicates run at the peer that holds the data (UDN-GEO-3).

The geometries are the suite's generated `areas_geojson` (every geometry type, CRS84) and
`areas_rd_geojson` (polygons in EPSG:28992), and, where the real open data is available, Köln's
nine district polygons and 113 road segments.
"""

from __future__ import annotations

import math
import re

import pytest
import shapely
import shapely.wkb
from pyproj import Transformer

from udn_conformance.client import expect_error, query
from udn_conformance.errors import adbc_grpc_status

REL = 1e-9


@pytest.fixture(scope="module")
def geo_node(launcher, generated):
    return launcher.node(
        {"areas_geojson": generated["areas_geojson"], "areas_rd_geojson": generated["areas_rd_geojson"]}
    )


@pytest.fixture(scope="module")
def geo_conn(geo_node):
    conn = geo_node.connect()
    yield conn
    conn.close()


def _shapes(conn, table: str, key: str) -> dict:
    rows = query(conn, f'SELECT "{key}", geometry FROM {table}').to_pylist()
    return {r[key]: shapely.wkb.loads(r["geometry"]) for r in rows}


def _close(a: float | None, b: float, what: str) -> None:
    assert a is not None, f"{what}: NULL"
    assert math.isclose(a, b, rel_tol=REL, abs_tol=1e-9), f"{what}: node {a!r}, shapely {b!r}"


@pytest.mark.requirement("UDN-GEO-1")
def test_measurements_agree_with_shapely(geo_conn):
    shapes = _shapes(geo_conn, "areas_geojson", "area_id")
    rows = query(
        geo_conn,
        "SELECT area_id, ST_Area(geometry) AS area, ST_Length(geometry) AS length, "
        "ST_Distance(geometry, ST_Point(5.0, 52.0)) AS distance, "
        "ST_DWithin(geometry, ST_Point(5.0, 52.0), 0.5) AS near, "
        "ST_AsText(geometry) AS wkt, ST_GeometryType(geometry) AS kind "
        "FROM areas_geojson ORDER BY area_id",
    ).to_pylist()
    assert len(rows) == len(shapes) == 18
    origin = shapely.Point(5.0, 52.0)
    for row in rows:
        shape = shapes[row["area_id"]]
        what = f"area {row['area_id']} ({shape.geom_type})"
        _close(row["area"], shape.area, f"ST_Area of {what}")
        if shape.geom_type in ("LineString", "MultiLineString"):
            _close(row["length"], shape.length, f"ST_Length of {what}")
        _close(row["distance"], shape.distance(origin), f"ST_Distance of {what}")
        assert row["near"] == (shape.distance(origin) <= 0.5), f"ST_DWithin of {what}"
        assert shapely.from_wkt(row["wkt"]).equals(shape), f"ST_AsText of {what}: {row['wkt']}"


@pytest.mark.requirement("UDN-GEO-1")
def test_centroids_and_coordinates_agree_with_shapely(geo_conn):
    shapes = _shapes(geo_conn, "areas_geojson", "area_id")
    rows = query(
        geo_conn,
        "SELECT area_id, ST_X(ST_Centroid(geometry)) AS x, ST_Y(ST_Centroid(geometry)) AS y "
        "FROM areas_geojson WHERE ST_GeometryType(geometry) IN ('ST_Polygon', 'ST_MultiPolygon', "
        "'ST_Point', 'ST_LineString') ORDER BY area_id",
    ).to_pylist()
    assert rows, "no polygons, points or lines in areas_geojson"
    for row in rows:
        centroid = shapes[row["area_id"]].centroid
        _close(row["x"], centroid.x, f"ST_X(ST_Centroid) of area {row['area_id']}")
        _close(row["y"], centroid.y, f"ST_Y(ST_Centroid) of area {row['area_id']}")


@pytest.mark.requirement("UDN-GEO-1")
def test_spatial_joins_agree_with_shapely(geo_conn):
    shapes = _shapes(geo_conn, "areas_geojson", "area_id")
    for predicate, shapely_predicate in [
        ("ST_Intersects", lambda a, b: a.intersects(b)),
        ("ST_Contains", lambda a, b: a.contains(b)),
        ("ST_Within", lambda a, b: a.within(b)),
    ]:
        got = {
            (r["a"], r["b"])
            for r in query(
                geo_conn,
                f"SELECT a.area_id AS a, b.area_id AS b FROM areas_geojson a JOIN areas_geojson b "
                f"ON {predicate}(a.geometry, b.geometry)",
            ).to_pylist()
        }
        want = {(a, b) for a, sa in shapes.items() for b, sb in shapes.items() if shapely_predicate(sa, sb)}
        assert got == want, f"{predicate}: extra {sorted(got - want)[:5]}, missing {sorted(want - got)[:5]}"


@pytest.mark.requirement("UDN-GEO-1")
def test_points_in_polygons_from_text(geo_conn):
    """`ST_Point` and `ST_GeomFromText` constants against the served polygons."""
    polygon = "POLYGON((4.4 51.8, 4.6 51.8, 4.6 52.1, 4.4 52.1, 4.4 51.8))"
    shapes = _shapes(geo_conn, "areas_geojson", "area_id")
    got = {
        r["area_id"]
        for r in query(
            geo_conn,
            f"SELECT area_id FROM areas_geojson WHERE ST_Intersects(geometry, ST_GeomFromText('{polygon}')) "
            "OR ST_Contains(geometry, ST_Point(5.48, 51.44))",
        ).to_pylist()
    }
    area = shapely.from_wkt(polygon)
    want = {i for i, s in shapes.items() if s.intersects(area) or s.contains(shapely.Point(5.48, 51.44))}
    assert got == want and want


@pytest.mark.requirement("UDN-GEO-1")
def test_null_geometries_give_null(geo_conn):
    row = query(
        geo_conn,
        "SELECT ST_Area(CAST(NULL AS BYTEA)) AS area, "
        "ST_Intersects(geometry, CAST(NULL AS BYTEA)) AS hit, "
        "ST_DWithin(geometry, NULL, 1) AS near FROM areas_geojson LIMIT 1",
    ).to_pylist()[0]
    assert row == {"area": None, "hit": None, "near": None}


@pytest.mark.requirement("UDN-GEO-1")
def test_real_districts_and_roads_agree_with_shapely(launcher, shared_data):
    """Köln: which road segments cross which district, and the districts' areas."""
    from udn_conformance.datasets import SHARED_TABLES

    node = launcher.node(
        {t: shared_data / SHARED_TABLES[t] for t in ("koeln_districts", "koeln_segments")}
    )
    with node.connect() as conn:
        districts = _shapes(conn, "koeln_districts", "STB_NR")
        roads = _shapes(conn, "koeln_segments", "OBJECTID")
        got = {
            (r["d"], r["s"])
            for r in query(
                conn,
                "SELECT d.\"STB_NR\" AS d, s.\"OBJECTID\" AS s FROM koeln_districts d "
                "JOIN koeln_segments s ON ST_Intersects(d.geometry, s.geometry)",
            ).to_pylist()
        }
        areas = {
            r["d"]: r["area"]
            for r in query(conn, 'SELECT "STB_NR" AS d, ST_Area(geometry) AS area FROM koeln_districts').to_pylist()
        }
    want = {(d, s) for d, sd in districts.items() for s, ss in roads.items() if sd.intersects(ss)}
    assert len(districts) == 9 and len(roads) == 113
    assert got == want, f"extra {sorted(got - want)[:5]}, missing {sorted(want - got)[:5]}"
    for d, shape in districts.items():
        _close(areas[d], shape.area, f"ST_Area of district {d}")


# Reference points of the RD system (RDNAPTRANS 2018): WGS 84 longitude, latitude -> RD x, y.
RD_REFERENCE = {
    "Amersfoort": ((5.387_206_21, 52.155_174_40), (155_000.0, 463_000.0)),
    "Westertoren": ((4.883_525_59, 52.374_532_53), (120_700.723, 487_525.501)),
}


@pytest.mark.requirement("UDN-GEO-2")
@pytest.mark.parametrize("place", sorted(RD_REFERENCE))
def test_transform_between_wgs84_and_rd_is_within_a_metre(geo_conn, place):
    (lon, lat), (x, y) = RD_REFERENCE[place]
    to_rd = query(
        geo_conn,
        f"SELECT ST_X(g) AS x, ST_Y(g) AS y, ST_SRID(g) AS srid FROM (SELECT ST_Transform("
        f"ST_SetSRID(ST_Point({lon}, {lat}), 4326), 28992) AS g)",
    ).to_pylist()[0]
    assert to_rd["srid"] == 28992
    assert math.hypot(to_rd["x"] - x, to_rd["y"] - y) < 1.0, (place, to_rd)
    to_wgs = query(
        geo_conn,
        f"SELECT ST_X(g) AS lon, ST_Y(g) AS lat FROM (SELECT ST_Transform(ST_Point({x}, {y}), 28992, 4326) AS g)",
    ).to_pylist()[0]
    metres_east = (to_wgs["lon"] - lon) * 111_320 * math.cos(math.radians(lat))
    metres_north = (to_wgs["lat"] - lat) * 110_574
    assert math.hypot(metres_east, metres_north) < 1.0, (place, to_wgs)


@pytest.mark.requirement("UDN-GEO-2")
def test_columns_state_their_crs_and_transform_with_it(geo_conn):
    srids = query(
        geo_conn,
        "SELECT (SELECT ST_SRID(geometry) FROM areas_geojson LIMIT 1) AS wgs, "
        "(SELECT ST_SRID(geometry) FROM areas_rd_geojson LIMIT 1) AS rd",
    ).to_pylist()[0]
    assert srids == {"wgs": 4326, "rd": 28992}
    # The RD polygons in WGS 84, against an independent PROJ (pyproj), vertex by vertex.
    rows = query(
        geo_conn, "SELECT buurt_id, geometry, ST_Transform(geometry, 4326) AS wgs FROM areas_rd_geojson"
    ).to_pylist()
    proj = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True)
    for row in rows:
        rd = shapely.wkb.loads(row["geometry"])
        wgs = shapely.wkb.loads(row["wgs"])
        for (x, y), (lon, lat) in zip(rd.exterior.coords, wgs.exterior.coords, strict=True):
            want_lon, want_lat = proj.transform(x, y)
            east = (lon - want_lon) * 111_320 * math.cos(math.radians(lat))
            north = (lat - want_lat) * 110_574
            assert math.hypot(east, north) < 2.0, (row["buurt_id"], (lon, lat), (want_lon, want_lat))
    # Distances in metres: ST_DWithin on the transformed sensors of a 250 m grid.
    near = query(
        geo_conn,
        "SELECT count(*) AS n FROM areas_rd_geojson WHERE "
        "ST_DWithin(geometry, ST_Transform(ST_SetSRID(ST_Point(5.3872, 52.1552), 4326), 28992), 100)",
    ).to_pylist()[0]["n"]
    assert near == 1


@pytest.mark.requirement("UDN-GEO-2")
@pytest.mark.parametrize(
    "sql, needle",
    [
        ("SELECT ST_Transform(ST_GeomFromText('POINT(1 2)'), 28992)", "CRS is not known"),
        ("SELECT ST_Transform(geometry, 2154) FROM areas_rd_geojson", "EPSG:2154"),
        ("SELECT ST_Transform(ST_Point(1, 2), 4326, 999999)", "EPSG:999999"),
        (
            "SELECT ST_DWithin(a.geometry, b.geometry, 10) FROM areas_geojson a, areas_rd_geojson b",
            "EPSG:4326 and EPSG:28992",
        ),
    ],
)
def test_crs_errors_name_the_crs(geo_conn, sql, needle):
    err = expect_error(geo_conn, sql)
    assert adbc_grpc_status(err) == "InvalidArgument", err
    assert needle in str(err), err


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-GEO-3")
def test_spatial_predicates_run_at_the_peer(launcher, generated, tmp_path_factory):
    peer = launcher.spawn(
        [
            "--table", f"areas={generated['areas_geojson']}",
            "--table", f"areas_rd={generated['areas_rd_geojson']}",
        ],
        name="gemeente",
    )
    config = tmp_path_factory.mktemp("geo-coordinator") / "coordinator.toml"
    config.write_text('[federation]\npeer_timeout = "10s"\n')
    coordinator = launcher.spawn(
        ["--config", str(config), "--peer", f"gemeente={peer.flight_url}"], name="coordinator"
    )
    filter_sql = (
        "SELECT area_id FROM gemeente.public.areas "
        "WHERE ST_Intersects(geometry, ST_GeomFromText('POLYGON((4.4 51.8, 4.6 51.8, 4.6 52.1, 4.4 52.1, 4.4 51.8))'))"
    )
    join_sql = (
        "SELECT a.area_id, b.area_id AS other FROM gemeente.public.areas a "
        "JOIN gemeente.public.areas b ON ST_Contains(a.geometry, b.geometry) WHERE a.area_id <> b.area_id"
    )
    with coordinator.connect() as conn, peer.connect() as direct:
        for sql, predicate in [(filter_sql, "st_intersects"), (join_sql, "st_contains")]:
            table = query(conn, "EXPLAIN " + sql)
            plans = dict(zip(table.column("plan_type").to_pylist(), table.column("plan").to_pylist()))
            sent = re.findall(r"VirtualExecutionPlan name=gemeente .*?base_sql=(.*)$", plans["physical_plan"], re.M)
            assert len(sent) == 1 and predicate in sent[0].lower(), plans["physical_plan"]
            local = sql.replace("gemeente.public.", "")
            got = sorted(tuple(r.values()) for r in query(conn, sql).to_pylist())
            want = sorted(tuple(r.values()) for r in query(direct, local).to_pylist())
            assert got == want and want, (sql, got, want)
