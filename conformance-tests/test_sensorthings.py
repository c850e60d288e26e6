"""Polder's OGC SensorThings API source (`format = "sensorthings"`), against the fixture server
of `udn_conformance/sensorthings_server.py` (pages modelled on Samen Meten): every entity set
read whole through its pages, answers equal to the fixture's own data, columns, conditions and
page size sent to the service (`$select`, `$filter`, `$top`) and shown by `EXPLAIN`, and every failure (a slow
page, a broken next link, a page that is not JSON, a next link leaving the service, a service
down at startup) a typed error naming the source, never a partial answer.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from udn_conformance import wkb
from udn_conformance.client import expect_error, query
from udn_conformance.errors import adbc_grpc_status
from udn_conformance.node import run_expecting_exit, with_catalog
from udn_conformance.sensorthings_server import HOURS, SensorThingsServer

pytestmark = [pytest.mark.spawns_node, pytest.mark.beyond_spec("Polder's SensorThings API source")]


def _config(service: str, tables: dict[str, str], page_size: int = 40, timeout_s: int = 10, optional=False) -> str:
    out = []
    for name, entity in tables.items():
        out += [
            "[[tables]]", f'name = "{name}"', f'location = "{service}"', 'format = "sensorthings"',
            f"optional = {'true' if optional else 'false'}",
            "[tables.sensorthings]", f'entity = "{entity}"', f"page_size = {page_size}",
            f"request_timeout_s = {timeout_s}", "",
        ]
    return with_catalog("\n".join(out))


@pytest.fixture(scope="module")
def service():
    with SensorThingsServer() as server:
        yield server


@pytest.fixture(scope="module")
def node(launcher, service, tmp_path_factory):
    config = tmp_path_factory.mktemp("sensorthings") / "node.toml"
    config.write_text(_config(f"{service.url}/v1.1", {
        "things": "Things", "locations": "Locations", "datastreams": "Datastreams",
        "observations": "Observations",
    }), encoding="utf-8")
    return launcher.spawn(["--config", str(config)])


def test_every_entity_set_reads_whole(node, service):
    data = service.data
    with node.connect() as conn:
        things = query(conn, "SELECT id, name, description, properties FROM things ORDER BY id").to_pylist()
        locations = query(conn, "SELECT id, geometry FROM locations ORDER BY id").to_pylist()
        streams = query(
            conn, "SELECT id, unit_symbol, thing_id, observed_property FROM datastreams ORDER BY id"
        ).to_pylist()
        observations = query(conn, "SELECT count(*) AS n, sum(result) AS s FROM observations").to_pylist()[0]
    assert [(t["id"], t["name"], t["description"]) for t in things] == [
        (str(t["@iot.id"]), t["name"], t["description"]) for t in data["Things"]
    ]
    assert [t["properties"] for t in things][0].startswith("{")
    for row, location in zip(locations, data["Locations"], strict=True):
        decoded = wkb.decode(row["geometry"])
        assert decoded == {"type": "Point", "coordinates": location["location"]["coordinates"]}
    assert [(s["id"], s["unit_symbol"], s["thing_id"], s["observed_property"]) for s in streams] == [
        (str(d["@iot.id"]), "ug/m3", str(d["Thing"]["@iot.id"]), d["ObservedProperty"]["name"])
        for d in data["Datastreams"]
    ]
    assert observations["n"] == len(data["Observations"]) == 6 * HOURS
    assert observations["s"] == pytest.approx(sum(o["result"] for o in data["Observations"]))


def test_conditions_and_page_size_reach_the_service(node, service):
    since = dt.datetime(2024, 11, 2, 12, tzinfo=dt.timezone.utc)
    sql = (
        "SELECT datastream_id, count(*) AS n, avg(result) AS mean FROM observations "
        "WHERE phenomenon_time >= TIMESTAMP '2024-11-02T12:00:00Z' AND datastream_id IN ('10', '21') "
        "GROUP BY datastream_id ORDER BY datastream_id"
    )
    service.requests.clear()
    with node.connect() as conn:
        got = query(conn, sql).to_pylist()
        plan = query(conn, "EXPLAIN " + sql).to_pylist()
    want = {}
    for o in service.data["Observations"]:
        t = dt.datetime.fromisoformat(o["phenomenonTime"].replace("Z", "+00:00"))
        ds = str(o["Datastream"]["@iot.id"])
        if t >= since and ds in ("10", "21"):
            want.setdefault(ds, []).append(o["result"])
    assert [(r["datastream_id"], r["n"]) for r in got] == [(k, len(v)) for k, v in sorted(want.items())]
    for r in got:
        assert r["mean"] == pytest.approx(sum(want[r["datastream_id"]]) / len(want[r["datastream_id"]]))
    filters = [q.get("$filter", "") for path, q in service.requests if path.endswith("/Observations")]
    assert filters and all("phenomenonTime ge 2024-11-02T12:00:00" in f for f in filters), filters
    assert all("Datastream/id eq 10" in f and "Datastream/id eq 21" in f for f in filters), filters
    tops = {q.get("$top") for path, q in service.requests if path.endswith("/Observations")}
    assert tops == {"40"}, tops
    # Only the properties the query reads: the id (the key), the time (its condition), the result.
    selects = {q.get("$select") for path, q in service.requests if path.endswith("/Observations")}
    assert selects == {"id,phenomenonTime,result"}, selects
    # Only the matching pages travelled: 2 streams x 36 hours at 40 per page.
    assert len(filters) == 2
    logical = next(r["plan"] for r in plan if r["plan_type"] == "logical_plan")
    assert "partial_filters=" in logical and "phenomenon_time" in logical, logical


def test_a_limit_reads_only_the_pages_it_needs(node, service):
    service.requests.clear()
    with node.connect() as conn:
        rows = query(conn, "SELECT id FROM observations LIMIT 5").to_pylist()
    assert len(rows) == 5
    pages = [q for path, q in service.requests if path.endswith("/Observations")]
    assert len(pages) == 1 and pages[0]["$top"] == "5", pages


@pytest.mark.parametrize(
    "mode, needle",
    [
        ("slow", "no answer within 1 s"),
        ("broken-link", "answered HTTP 404"),
        ("malformed", "is not a SensorThings page"),
        ("escape", "leaves the service"),
    ],
)
def test_a_failing_page_fails_the_query_naming_the_source(launcher, service, tmp_path, mode, needle):
    config = tmp_path / "node.toml"
    config.write_text(_config(f"{service.url}/{mode}/v1.1", {"obs": "Observations"}, timeout_s=1), encoding="utf-8")
    node = launcher.spawn(["--config", str(config)])
    try:
        with node.connect() as conn:
            err = expect_error(conn, "SELECT count(*) FROM obs")
            assert adbc_grpc_status(err) == "Unavailable", err
            assert "SensorThings source 'obs'" in str(err) and needle in str(err), err
            # The first page alone is fine: a LIMIT within it is answered.
            assert len(query(conn, "SELECT id FROM obs LIMIT 3").to_pylist()) == 3
        assert node.alive()
    finally:
        node.stop()


def test_a_service_down_at_startup(launcher, polder_bin, tmp_path):
    down = "http://127.0.0.1:9/v1.1"
    mandatory = tmp_path / "mandatory.toml"
    mandatory.write_text(_config(down, {"obs": "Observations"}), encoding="utf-8")
    code, stderr = run_expecting_exit([str(polder_bin), "serve", "--config", str(mandatory)], tmp_path)
    assert code != 0 and "obs" in stderr and "SensorThings source 'obs'" in stderr, stderr[-1500:]
    optional = tmp_path / "optional.toml"
    optional.write_text(_config(down, {"obs": "Observations"}, optional=True), encoding="utf-8")
    node = launcher.spawn(["--config", str(optional)])
    try:
        ready = requests.get(f"{node.http_url}/readyz", timeout=30).json()
        assert "obs" in ready["skipped"] and "cannot reach" in ready["skipped"]["obs"], ready
    finally:
        node.stop()


def test_bad_options_are_refused(polder_bin, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(
        with_catalog('[[tables]]\nname = "obs"\nlocation = "http://127.0.0.1:9/v1.1"\nformat = "sensorthings"\n'),
        encoding="utf-8",
    )
    code, stderr = run_expecting_exit([str(polder_bin), "serve", "--config", str(config)], tmp_path)
    assert code != 0 and "[tables.sensorthings]" in stderr, stderr[-1500:]
    config.write_text(
        with_catalog(
            '[[tables]]\nname = "obs"\nlocation = "http://127.0.0.1:9/v1.1"\nformat = "sensorthings"\n'
            '[tables.sensorthings]\nentity = "Sensors"\n'
        ),
        encoding="utf-8",
    )
    code, stderr = run_expecting_exit([str(polder_bin), "serve", "--config", str(config)], tmp_path)
    assert code != 0 and "Sensors" in stderr, stderr[-1500:]
