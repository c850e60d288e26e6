"""The suite's own helpers, checked without a node: a wrong helper would hide a wrong node."""

from __future__ import annotations

import datetime as dt
import decimal
import struct

import pytest

from udn_conformance import paths, proto, shacl, wkb
from udn_conformance.compare import assert_same_rows, rows_of
from udn_conformance.errors import GRPC_CODES, adbc_grpc_status, flight_grpc_status


def test_proto_round_trip():
    body = proto.encode([(1, "SELECT 1"), (2, b"\x00\x01"), (5, 300), (5, 1)])
    assert proto.decode(body) == {1: [b"SELECT 1"], 2: [b"\x00\x01"], 5: [300, 1]}


def test_command_statement_query_is_an_any():
    type_url, value = proto.unpack_any(proto.command_statement_query("SELECT 42"))
    assert type_url == "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    assert proto.decode(value) == {1: [b"SELECT 42"]}


def test_proto_rejects_truncated_input():
    with pytest.raises(ValueError):
        proto.decode(b"\x0a\x05ab")


def _point(order: str, x: float, y: float, code: int = 1, srid: int | None = None) -> bytes:
    flag = b"\x01" if order == "<" else b"\x00"
    if srid is not None:
        return flag + struct.pack(order + "IIdd", code | 0x20000000, srid, x, y)
    return flag + struct.pack(order + "Idd", code, x, y)


@pytest.mark.parametrize("order", ["<", ">"])
def test_wkb_point_both_byte_orders(order):
    assert wkb.decode(_point(order, 5.12, 52.09)) == {"type": "Point", "coordinates": [5.12, 52.09]}


def test_wkb_ewkb_with_srid():
    assert wkb.decode(_point("<", 1.5, 2.5, srid=4326))["coordinates"] == [1.5, 2.5]


def test_wkb_polygon_and_multipolygon():
    ring = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]
    polygon = b"\x01" + struct.pack("<II", 3, 1) + struct.pack("<I", len(ring))
    polygon += b"".join(struct.pack("<dd", *p) for p in ring)
    multi = b"\x01" + struct.pack("<II", 6, 2) + polygon + polygon
    geojson = {"type": "MultiPolygon", "coordinates": [[[list(p) for p in ring]]] * 2}
    assert wkb.same_geometry(wkb.decode(multi), geojson)
    moved = {
        "type": "MultiPolygon",
        "coordinates": [[[[0.0, 0.0], [1.0, 0.0], [1.0, 1.5], [0.0, 0.0]]]] * 2,
    }
    assert not wkb.same_geometry(wkb.decode(multi), moved)


def test_wkb_rejects_trailing_bytes():
    with pytest.raises(ValueError):
        wkb.decode(_point("<", 1.0, 2.0) + b"\x00")


def test_rows_compare_numbers_across_types_and_order():
    node = rows_of([(1, decimal.Decimal("2.50"), "a"), (2, 3.0000000001, None)])
    ref = rows_of([(2, 3, None), (1.0, 2.5, "a")])
    assert_same_rows(node, ref)


def test_rows_compare_detects_differences():
    with pytest.raises(AssertionError):
        assert_same_rows(rows_of([(1, 2.5)]), rows_of([(1, 2.6)]))
    with pytest.raises(AssertionError):
        assert_same_rows(rows_of([(1,)]), rows_of([(1,), (1,)]))
    with pytest.raises(AssertionError):
        assert_same_rows(rows_of([(None,)]), rows_of([(0,)]))
    with pytest.raises(AssertionError):
        assert_same_rows(rows_of([(1,), (2,)]), rows_of([(2,), (1,)]), ordered=True)


def test_rows_compare_zoned_timestamps_as_utc():
    naive = dt.datetime(2025, 10, 1, 12, 0)
    zoned = dt.datetime(2025, 10, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert_same_rows(rows_of([(naive,)]), rows_of([(zoned,)]))


class _FakeAdbcError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.vendor_code = None
        self.status_code = None


@pytest.mark.parametrize("name", sorted(set(GRPC_CODES.values()) - {"OK"}))
def test_grpc_status_read_from_adbc_message(name):
    err = _FakeAdbcError(f"INVALID_ARGUMENT: [FlightSQL] boom (a; b) ({name}; Prepare)")
    assert adbc_grpc_status(err) == name


@pytest.mark.parametrize(
    "message,expected",
    [
        (
            "gRPC returned out-of-range error, with message: Error, decoded message length too "
            "large: found 2000096 bytes, the limit is: 1048576 bytes",
            "OutOfRange",
        ),
        ("Flight returned invalid argument error, with message: x", "InvalidArgument"),
        ("gRPC returned resource exhausted error, with message: x", "ResourceExhausted"),
        (
            "Flight returned timeout error, with message: x. gRPC client debug context: "
            "DEADLINE_EXCEEDED:x. Client context: OK",
            "DeadlineExceeded",
        ),
    ],
    ids=["out_of_range", "invalid_argument", "resource_exhausted", "debug_context"],
)
def test_grpc_status_read_from_pyarrow_flight_message(message, expected):
    import pyarrow as pa

    # pyarrow raises ArrowInvalid for several codes: the message, not the class, decides.
    assert flight_grpc_status(pa.ArrowInvalid(message)) == expected


# --- SHACL validation of catalogs (udn_conformance.shacl) -----------------------------------

_SHARED_STANDARDS = (paths.REPO or paths.SUITE).parent / "shared" / "standards"

_MINIMAL_CATALOG = """\
@prefix dcat: <http://www.w3.org/ns/dcat#> .
@prefix dct: <http://purl.org/dc/terms/> .
@prefix foaf: <http://xmlns.com/foaf/0.1/> .
@prefix vcard: <http://www.w3.org/2006/vcard/ns#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
<https://example.org/catalog> a dcat:Catalog ;
    dct:title "t" ; dct:description "d" ;
    dct:publisher <https://example.org/p> ;
    dct:license <http://creativecommons.org/publicdomain/zero/1.0/> ;
    dcat:contactPoint [ a vcard:Kind ; vcard:fn "c" ; vcard:hasEmail <mailto:c@example.org> ] ;
    dcat:dataset <https://example.org/dataset/a> .
<https://example.org/dataset/a> a dcat:Dataset ;
    dct:title "a" ; dct:description "d" ; dct:identifier "a" ;
    dct:publisher <https://example.org/p> ; dct:creator <https://example.org/p> ;
    dcat:contactPoint [ a vcard:Kind ; vcard:fn "c" ; vcard:hasEmail <mailto:c@example.org> ] ;
    dct:accessRights <http://publications.europa.eu/resource/authority/access-right/PUBLIC> ;
    dcat:theme <http://publications.europa.eu/resource/authority/data-theme/GOVE> .
<https://example.org/p> a foaf:Agent ; foaf:name "p" .
<http://creativecommons.org/publicdomain/zero/1.0/> a dct:LicenseDocument .
<http://publications.europa.eu/resource/authority/access-right/PUBLIC> a dct:RightsStatement .
<http://publications.europa.eu/resource/authority/data-theme/GOVE> a skos:Concept ;
    skos:prefLabel "Government"@en ;
    skos:inScheme <http://publications.europa.eu/resource/authority/data-theme> .
"""


def _catalog_graph(text: str = _MINIMAL_CATALOG):
    from rdflib import Graph

    return Graph().parse(data=text, format="turtle")


def test_shacl_minimal_catalog_has_no_violation():
    report = shacl.validate(_catalog_graph(), "minimal", udn=False)  # DCAT-AP(-NL) only
    assert not report.violations, report.violation_text()
    assert report.warnings, "the minimal catalog lacks recommended properties: warnings expected"


_BREAKS = {
    # name -> (text to remove from the minimal catalog, replacement, the path that must fail)
    "catalog_publisher": (
        "    dct:publisher <https://example.org/p> ;\n    dct:license", "    dct:license",
        "dct:publisher",
    ),
    "untyped_licence": (
        "<http://creativecommons.org/publicdomain/zero/1.0/> a dct:LicenseDocument .", "",
        "dct:license",
    ),
    "dataset_identifier": ('dct:identifier "a" ;', "", "dct:identifier"),
    "dataset_theme": (
        "    dcat:theme <http://publications.europa.eu/resource/authority/data-theme/GOVE> .",
        '    dct:subject "x" .',
        "dcat:theme",
    ),
}


@pytest.mark.parametrize("case", list(_BREAKS))
def test_shacl_finds_violations(case):
    """Each broken catalog gives a violation on the property broken, with a readable line."""
    old, new, path = _BREAKS[case]
    text = _MINIMAL_CATALOG.replace(old, new)
    assert text != _MINIMAL_CATALOG
    report = shacl.validate(_catalog_graph(text), "broken", udn=False)
    paths = {r.path for r in report.violations}
    assert path in paths, f"no violation on {path}: {report.violation_text()}"
    line = next(r.line() for r in report.violations if r.path == path)
    assert "focus <https://example.org/" in line and path in line, line


def test_shacl_shapes_are_the_official_files():
    """The committed shapes are unchanged copies of ../shared/standards (when present)."""
    files = [shacl.STANDARDS / folder / name for folder, name in shacl.ALL_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"shapes missing from ontology/standards: {missing}"
    if not _SHARED_STANDARDS.is_dir():
        pytest.skip(f"{_SHARED_STANDARDS} not present")
    differ = [
        str(f.relative_to(shacl.STANDARDS))
        for f in files
        if f.read_bytes() != (_SHARED_STANDARDS / f.relative_to(shacl.STANDARDS)).read_bytes()
    ]
    assert not differ, f"ontology/standards differs from {_SHARED_STANDARDS}: {differ}"


def test_udn_shapes_exist():
    """UDN-CAT-3 names the UDN profile's own shapes, ontology/udn-shapes.ttl; the catalog tests
    validate against them only when the file exists."""
    assert shacl.UDN_SHAPES.is_file(), f"{shacl.UDN_SHAPES} is missing"
    shacl.shapes_graph(shacl.UDN_SHAPES)  # parses
