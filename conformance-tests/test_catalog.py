"""UDN-CAT-1 … UDN-CAT-6: the node's DCAT-AP-NL 3.0 catalog over HTTP.

What the catalog says is checked against facts obtained independently: row counts and time
ranges with SQL over Flight SQL (ADBC), columns against the Arrow schema the node serves, byte
sizes with `os.stat` of the files, the RDF formats against each other with rdflib, and the
catalog as a whole against the official SHACL shapes (`udn_conformance/shacl.py`). Tests on the
main node use only its HTTP address (`UDN_HTTP_URL` for a remote node); tests that need a
particular configuration start nodes of their own (`spawns_node`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import json
import os
import re
from pathlib import Path
from xml.etree import ElementTree

import pyarrow as pa
import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic, to_isomorphic

from udn_conformance import access, datasets, paths, rdf, shacl
from udn_conformance.client import query_rows
from udn_conformance.node import CATALOG_SECTION, run_expecting_exit
from udn_conformance.rdf import CSVW, DCAT, DCT, FOAF, QUDT, RDF, UDN, VCARD, XSD, one

EXAMPLE_CONFIG = (paths.REPO or paths.SUITE) / "node" / "config" / "node.example.toml"
MAIN_TABLES = [*datasets.TPCH_TABLES, "readings"]
# Generated files of every format, each on a node of its own (shared with test_formats.py).
FORMAT_TABLES = sorted(t for t in datasets.GENERATED if t != "readings")


# --- UDN-CAT-1: GET /catalog and content negotiation -----------------------------------------


@pytest.mark.requirement("UDN-CAT-1")
@pytest.mark.parametrize("accept", [None, "*/*", "text/*", "text/turtle"], ids=str)
def test_catalog_is_turtle_by_default(main_http, accept):
    """No Accept header, or one accepting anything, gives Turtle (UTF-8) with `Vary: Accept`."""
    r = rdf.get(f"{main_http}/catalog", accept)
    graph = rdf.parse(r, f"GET /catalog (Accept: {accept})")
    assert rdf.media_type(r) == "text/turtle", r.headers
    charset = r.headers["Content-Type"].lower().replace(" ", "")
    assert "charset=utf-8" in charset, f"Turtle without charset=utf-8: {r.headers['Content-Type']}"
    assert "accept" in r.headers.get("Vary", "").lower(), f"no Vary: Accept: {dict(r.headers)}"
    assert len(graph) > 0
    rdf.the_catalog(graph)


@pytest.mark.requirement("UDN-CAT-1", "UDN-SPARQL-1")
@pytest.mark.parametrize("path", ["/catalog", "/sparql"])
def test_metadata_may_be_read_from_any_web_page(main_http, path):
    """Open metadata is meant to be harvested and queried from browsers too: CORS allows any
    origin, and a preflight for a SPARQL POST is answered."""
    import requests

    origin = {"Origin": "https://portal.example"}
    r = requests.get(f"{main_http}{path}", headers=origin, timeout=30)
    assert r.status_code == 200, r.status_code
    assert r.headers.get("Access-Control-Allow-Origin") == "*", dict(r.headers)
    preflight = requests.options(
        f"{main_http}{path}",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    assert preflight.status_code in (200, 204), preflight.status_code
    assert preflight.headers.get("Access-Control-Allow-Origin") == "*", dict(preflight.headers)
    assert "POST" in preflight.headers.get("Access-Control-Allow-Methods", ""), dict(
        preflight.headers
    )


@pytest.mark.requirement("UDN-CAT-1")
@pytest.mark.parametrize(
    "kind", ["application/ld+json", "application/n-triples", "application/rdf+xml"]
)
def test_catalog_in_every_format_is_the_same_graph(main_http, main_catalog, kind):
    """JSON-LD, N-Triples and RDF/XML carry exactly the triples of the Turtle (blank nodes
    aside)."""
    r = rdf.get(f"{main_http}/catalog", kind)
    graph = rdf.parse(r, f"GET /catalog (Accept: {kind})")
    assert rdf.media_type(r) == kind, r.headers
    assert "accept" in r.headers.get("Vary", "").lower(), f"no Vary: Accept: {dict(r.headers)}"
    if kind == "application/ld+json":
        json.loads(r.content)  # JSON-LD is JSON
    if kind == "application/rdf+xml":
        ElementTree.fromstring(r.content)  # well-formed XML
    assert isomorphic(graph, main_catalog.graph), _graph_difference(graph, main_catalog.graph)


# Accept header -> the media type it must select (quality values decide, RFC 9110 §12.5.1).
NEGOTIATION = {
    "application/ld+json;q=0.5, application/n-triples;q=0.9": "application/n-triples",
    "text/turtle;q=0.1, application/ld+json": "application/ld+json",
    "text/html, application/n-triples;q=0.2": "application/n-triples",
    "text/html;q=1.0, text/turtle;q=0.3, application/ld+json;q=0.2": "text/turtle",
    "application/json;q=0.9, application/ld+json": "application/ld+json",
    "text/turtle;q=0, */*;q=0.1": "not text/turtle",
    "TEXT/Turtle": "text/turtle",
    "application/rdf+xml": "application/rdf+xml",
    "application/rdf+xml;q=0.9, text/turtle": "text/turtle",
    "text/turtle;q=0.8, application/rdf+xml;q=0.9": "application/rdf+xml",
    # SPARQLWrapper's and rdflib's defaults for graphs
    "application/sparql-results+xml, application/rdf+xml": "application/rdf+xml",
    "application/*;q=0.2, application/rdf+xml;q=0.1, text/turtle;q=0.15": "not text/turtle",
}


@pytest.mark.requirement("UDN-CAT-1")
@pytest.mark.parametrize("accept", list(NEGOTIATION))
def test_accept_quality_values_choose_the_format(main_http, accept):
    r = rdf.get(f"{main_http}/catalog", accept)
    assert r.status_code == 200, f"Accept {accept!r}: HTTP {r.status_code}: {r.text[:300]}"
    expected = NEGOTIATION[accept]
    got = rdf.media_type(r)
    if expected.startswith("not "):
        assert got != expected.removeprefix("not ") and got in rdf.RDF_FORMATS, (
            f"Accept {accept!r} gave {got}"
        )
    else:
        assert got == expected, f"Accept {accept!r} gave {got}, expected {expected}"
    rdf.parse(r, f"GET /catalog (Accept: {accept})")


@pytest.mark.requirement("UDN-CAT-1")
@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "application/json",
        "application/ld+json;q=0",
        "application/rdf+xml;q=0, text/html",
    ],
)
def test_unsatisfiable_accept_is_406(main_http, accept):
    """406, with a body that lists the media types the catalog is available in."""
    r = rdf.get(f"{main_http}/catalog", accept)
    assert r.status_code == 406, f"Accept {accept!r}: HTTP {r.status_code} {rdf.media_type(r)}"
    unlisted = [kind for kind in rdf.RDF_FORMATS if kind not in r.text]
    assert not unlisted, f"the 406 does not list {unlisted}: {r.text[:500]!r}"
    assert rdf.get(f"{main_http}/catalog").status_code == 200


# JSON-LD as JSON-LD tooling reads it, RDF/XML as rdflib reads it.

# Namespaces whose properties and classes a compact JSON-LD catalog writes as compact IRIs
# or terms (the DCAT-AP core); the others may be written in full.
COMPACTED = [
    "http://www.w3.org/ns/dcat#",
    "http://purl.org/dc/terms/",
    "http://xmlns.com/foaf/0.1/",
    "http://www.w3.org/2006/vcard/ns#",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
]



@pytest.mark.requirement("UDN-CAT-1")
def test_rdflib_reads_the_catalog_as_rdf_xml(main_http, main_catalog):
    """rdflib fetching /catalog as RDF/XML gets the graph of the Turtle."""
    reference = main_catalog.graph
    graph = Graph().parse(f"{main_http}/catalog", format="xml")
    assert isomorphic(graph, reference), (
        f"{len(graph)} triples in RDF/XML, {len(reference)} in Turtle"
    )


@pytest.fixture(scope="module")
def json_ld(main_http) -> dict:
    r = rdf.get(f"{main_http}/catalog", "application/ld+json")
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:300]}"
    assert rdf.media_type(r) == "application/ld+json", r.headers
    return json.loads(r.content)


def _nodes(value):
    """Every node object in a JSON-LD document (top level, @graph, embedded)."""
    if isinstance(value, list):
        for item in value:
            yield from _nodes(item)
    elif isinstance(value, dict):
        if "@value" not in value and "@context" not in value:
            yield value
        for key, item in value.items():
            if key != "@context":
                yield from _nodes(item)


@pytest.mark.requirement("UDN-CAT-1")
def test_json_ld_has_a_context(json_ld):
    """An inline @context that maps the DCAT-AP namespaces (to prefixes, or to terms)."""
    context = json_ld.get("@context")
    assert isinstance(context, dict), f"@context is not an inline object: {context!r}"[:300]
    mapped = json.dumps(context)
    missing = [ns for ns in COMPACTED[:4] if ns not in mapped]
    assert not missing, f"the @context does not map {missing}"


@pytest.mark.requirement("UDN-CAT-1")
def test_json_ld_is_compact(json_ld):
    """Classes as @type and properties as compact IRIs or terms, not as full IRIs."""
    nodes = list(_nodes(json_ld))
    assert nodes, "no node objects"
    full = sorted(
        {key for node in nodes for key in node if any(key.startswith(ns) for ns in COMPACTED)}
    )
    assert not full, f"properties written as full IRIs: {full[:10]}"
    types = [node["@type"] for node in nodes if "@type" in node]
    assert types, "no node object has @type"
    for node_type in types:
        for value in node_type if isinstance(node_type, list) else [node_type]:
            assert not any(value.startswith(ns) for ns in COMPACTED), f"@type {value} in full"


@pytest.mark.requirement("UDN-CAT-1")
def test_json_ld_reads_back_as_the_turtle(main_http, json_ld, main_catalog):
    """rdflib's JSON-LD parser gives exactly the graph of the Turtle, and finds the datasets
    and their titles by the @type and the compact keys."""
    reference = main_catalog.graph
    graph = Graph().parse(data=json.dumps(json_ld), format="json-ld", publicID=main_http)
    assert isomorphic(graph, reference), f"{len(graph)} triples, {len(reference)} in Turtle"
    datasets = set(graph.subjects(RDF.type, DCAT.Dataset))
    assert datasets == set(reference.subjects(RDF.type, DCAT.Dataset))
    assert all(graph.value(d, DCT.title) is not None for d in datasets)


# --- UDN-CAT-2: catalog, datasets, distributions, data services ------------------------------


@pytest.fixture(scope="module")
def served_tables(main_node, catalog) -> set[str]:
    """The tables the node serves in its catalog's `public` schema, as Flight SQL lists them
    (to a caller who may read them all, on a node under access control)."""
    token = access.certification_token()
    # Under the certification grants a hidden dataset is readable but in no metadata
    # (UDN-AUTH-10), so it is left out of what the catalog must describe.
    with access.adbc(main_node, token) as conn:
        objects = conn.adbc_get_objects(depth="tables", catalog_filter=catalog).read_all()
    found = set()
    for cat in objects.to_pylist():
        for schema in cat["catalog_db_schemas"] or []:
            if schema["db_schema_name"] == "public":
                found |= {t["table_name"] for t in schema["db_schema_tables"] or []}
    assert found, f"GetObjects lists no tables in {catalog}.public"
    return found - {access.HIDDEN} if token is not None else found


@pytest.mark.requirement("UDN-CAT-2")
def test_one_dataset_per_served_table(main_catalog, served_tables, catalog):
    """Exactly the tables Flight SQL lists, each one dcat:Dataset with its SQL name, listed in
    the one dcat:Catalog."""
    g = main_catalog.graph
    by_table = rdf.datasets_by_table(g)
    assert set(by_table) == served_tables, (
        f"datasets for {sorted(set(by_table) - served_tables)} that are not served; "
        f"no dataset for {sorted(served_tables - set(by_table))}"
    )
    listed = set(g.objects(main_catalog.iri, DCAT.dataset))
    for table, dataset in by_table.items():
        assert one(g, dataset, UDN.sqlTable) == Literal(f"{catalog}.public.{table}"), table
        assert dataset in listed, f"{dataset} is not a dcat:dataset of {main_catalog.iri}"
        assert (dataset, RDF.type, DCAT.Dataset) in g


DATASET_PROPERTIES = [
    DCT.title, DCT.description, DCT.identifier, DCT.publisher, DCT.creator,
    DCAT.contactPoint, DCT.accessRights, DCAT.theme,
]  # fmt: skip


@pytest.mark.requirement("UDN-CAT-2")
@pytest.mark.parametrize("table", MAIN_TABLES)
def test_dataset_and_distribution_properties(main_catalog, main_node, table):
    """A dataset carries the DCAT-AP-NL mandatory properties; its distribution the licence,
    format, media type (Arrow IPC stream), byte size, the Flight SQL URL as access URL and the
    Flight SQL data service as access service."""
    g = main_catalog.graph
    dataset = rdf.datasets_by_table(g)[table]
    missing = [g.qname(p) for p in DATASET_PROPERTIES if g.value(dataset, p) is None]
    assert not missing, f"{dataset} lacks {missing}"
    distribution = one(g, dataset, DCAT.distribution, f"dataset {table}")
    assert (distribution, RDF.type, DCAT.Distribution) in g
    assert isinstance(one(g, distribution, DCT.license), URIRef)
    # Harvesters (ckanext-dcat) read the licence on the dataset: the same one.
    assert one(g, dataset, DCT.license) == one(g, distribution, DCT.license)
    assert one(g, distribution, DCAT.mediaType) == rdf.ARROW_STREAM
    assert isinstance(one(g, distribution, DCT['format']), URIRef)
    size = one(g, distribution, DCAT.byteSize)
    assert isinstance(size, Literal) and size.datatype == XSD.nonNegativeInteger, size
    assert str(one(g, distribution, DCAT.accessURL)) == main_node.flight_url
    service = one(g, distribution, DCAT.accessService)
    assert one(g, service, DCAT.endpointURL) == URIRef(main_node.flight_url)
    assert (service, DCT.conformsTo, rdf.FLIGHT_SQL_SPEC) in g


def _flight_service(g) -> URIRef:
    services = [
        s
        for s in g.subjects(RDF.type, DCAT.DataService)
        if (s, DCT.conformsTo, rdf.FLIGHT_SQL_SPEC) in g
    ]
    assert len(services) == 1, f"expected one Flight SQL data service, found {services}"
    return services[0]


@pytest.mark.requirement("UDN-CAT-2")
def test_flight_sql_data_service(main_catalog, main_node, catalog):
    """The Flight SQL dcat:DataService: listed by the catalog, serving every dataset, with the
    endpoint URL clients connect to. A fresh ADBC connection to that URL answers a count over
    every dataset's udn:sqlTable."""
    g = main_catalog.graph
    service = _flight_service(g)
    assert service in set(g.objects(main_catalog.iri, DCAT.service))
    endpoint = one(g, service, DCAT.endpointURL)
    assert str(endpoint) == main_node.flight_url
    by_table = rdf.datasets_by_table(g)
    served = set(g.objects(service, DCAT.servesDataset))
    unserved = set(by_table.values()) - served
    assert not unserved, f"datasets not in dcat:servesDataset of {service}: {unserved}"
    endpoint_node = dataclasses.replace(main_node, flight_url=str(endpoint))
    with access.adbc(endpoint_node, access.certification_token()) as conn:
        for dataset in by_table.values():
            sql_table = str(one(g, dataset, UDN.sqlTable))
            assert query_rows(conn, f"SELECT count(*) AS n FROM {sql_table}")[0][0] >= 0


@pytest.mark.requirement("UDN-CAT-2")
def test_flight_sql_endpoint_description_resolves(main_catalog):
    """dcat:endpointDescription answers GET with RDF that describes the endpoint."""
    g = main_catalog.graph
    service = _flight_service(g)
    description = one(g, service, DCAT.endpointDescription)
    assert isinstance(description, URIRef)
    r = rdf.get(main_catalog.url_of(description))
    doc = rdf.parse(r, f"GET {description}")
    assert len(doc) > 0
    subjects = set(doc.subjects())
    assert description in subjects or service in subjects, (
        f"{description} says nothing about itself or {service}: {sorted(subjects)[:10]}"
    )
    endpoint = one(g, service, DCAT.endpointURL)
    for stated in doc.objects(None, UDN.endpointURL):  # the UDN profile's term for it
        assert stated == endpoint, f"{description} gives endpoint {stated}, the catalog {endpoint}"
    for kind in ("application/ld+json", "application/n-triples"):
        other = rdf.parse(rdf.get(main_catalog.url_of(description), kind), f"{description} {kind}")
        assert isomorphic(other, doc), kind


@pytest.mark.requirement("UDN-CAT-2")
def test_sparql_data_service(main_catalog):
    """The SPARQL endpoint is a dcat:DataService of the catalog, at `<base>/sparql`."""
    g = main_catalog.graph
    endpoint = URIRef(f"{main_catalog.base}/sparql")
    services = [s for s in g.subjects(DCAT.endpointURL, endpoint)]
    assert len(services) == 1, f"data services with endpointURL {endpoint}: {services}"
    assert (services[0], RDF.type, DCAT.DataService) in g
    assert services[0] in set(g.objects(main_catalog.iri, DCAT.service))


# --- UDN-CAT-3: SHACL ------------------------------------------------------------------------


def _validate(graph, label: str, shacl_reports: list) -> shacl.Report:
    report = shacl.validate(graph, label)
    shacl_reports.append(report)
    print("\n".join(report.summary_lines()))
    assert not report.violations, (
        f"{label}: {len(report.violations)} SHACL violation(s):\n{report.violation_text()}"
    )
    return report


@pytest.mark.requirement("UDN-CAT-3")
def test_main_node_catalog_validates(main_catalog, shacl_reports):
    """The conformance node: every table added with `--table` and no metadata of its own."""
    _validate(main_catalog.graph, "conformance node (TPC-H + readings)", shacl_reports)


@pytest.fixture(scope="module")
def sample_node(launcher):
    """Polder's sample node (no tables, no configuration): its base URL is its HTTP address."""
    return launcher.spawn([], name="amsterdam")


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-3")
def test_sample_node_catalog_validates(sample_node, shacl_reports):
    _validate(rdf.catalog_of(sample_node.http_url).graph, "sample node", shacl_reports)


@pytest.fixture(scope="module")
def example_node(launcher, generated):
    """node/config/node.example.toml as shipped, plus one table without any metadata."""
    args = ["--config", str(EXAMPLE_CONFIG), "--table", f"extra={generated['stations_csv']}"]
    return launcher.spawn(args, name="amsterdam")


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-3")
def test_example_node_with_an_extra_table_validates(example_node, shacl_reports):
    catalog = rdf.catalog_of(example_node.http_url)
    by_table = rdf.datasets_by_table(catalog.graph)
    assert {"air_quality", "traffic_counts", "neighbourhoods", "extra"} <= set(by_table)
    assert one(catalog.graph, by_table["extra"], DCT.title) == Literal("extra")
    _validate(catalog.graph, "node.example.toml + extra table", shacl_reports)


# --- UDN-CAT-4: columns, row counts, temporal coverage, byte size ----------------------------

_ARROW_NAMES = {
    pa.int8(): "Int8", pa.int16(): "Int16", pa.int32(): "Int32", pa.int64(): "Int64",
    pa.uint8(): "UInt8", pa.uint16(): "UInt16", pa.uint32(): "UInt32", pa.uint64(): "UInt64",
    pa.float16(): "Float16", pa.float32(): "Float32", pa.float64(): "Float64",
    pa.bool_(): "Boolean", pa.string(): "Utf8", pa.large_string(): "LargeUtf8",
    pa.string_view(): "Utf8View", pa.binary(): "Binary", pa.large_binary(): "LargeBinary",
    pa.binary_view(): "BinaryView", pa.date32(): "Date32", pa.date64(): "Date64",
    pa.null(): "Null",
}  # fmt: skip
_XSD = {
    "Int8": XSD.byte, "Int16": XSD.short, "Int32": XSD.int, "Int64": XSD.long,
    "UInt8": XSD.unsignedByte, "UInt16": XSD.unsignedShort, "UInt32": XSD.unsignedInt,
    "UInt64": XSD.unsignedLong, "Float16": XSD.float, "Float32": XSD.float,
    "Float64": XSD.double, "Boolean": XSD.boolean, "Utf8": XSD.string, "LargeUtf8": XSD.string,
    "Utf8View": XSD.string, "Date32": XSD.date, "Date64": XSD.date,
}  # fmt: skip


def _arrow_names(t: pa.DataType) -> set[str]:
    """Accepted spellings of an Arrow type: arrow-rs's (`Timestamp(us, UTC)`) or pyarrow's."""
    names = {str(t)}
    if t in _ARROW_NAMES:
        names.add(_ARROW_NAMES[t])
    elif pa.types.is_timestamp(t):
        names.add(f"Timestamp({t.unit})" if t.tz is None else f"Timestamp({t.unit}, {t.tz})")
        names.add(f'Timestamp({t.unit}, "{t.tz}")')
    elif pa.types.is_decimal(t):
        names.add(f"Decimal{t.bit_width}({t.precision}, {t.scale})")
    elif pa.types.is_time(t):
        names.add(f"Time{t.bit_width}({t.unit})")
    return {re.sub(r"\s+", "", n).lower() for n in names}


def _xsd_types(field: pa.Field) -> set[URIRef]:
    """XSD datatypes that describe an Arrow field's values."""
    t = field.type
    if pa.types.is_timestamp(t):
        return {XSD.dateTime} if t.tz is None else {XSD.dateTimeStamp, XSD.dateTime}
    if pa.types.is_decimal(t):
        return {XSD.decimal}
    if pa.types.is_time(t):
        return {XSD.time}
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        found = {XSD.base64Binary, XSD.hexBinary}
        if (field.metadata or {}).get(b"ARROW:extension:name", b"").startswith(b"geoarrow"):
            found.add(rdf.GEO.wkbLiteral)  # GeoSPARQL's datatype for WKB geometry
        return found
    name = _ARROW_NAMES.get(t)
    return {_XSD[name]} if name in _XSD else set()


def _is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_date(t) or pa.types.is_timestamp(t)


class Facts:
    """One node's catalog and its Flight SQL connection, to check datasets against the data."""

    def __init__(self, node, catalog_name: str):
        self.node = node
        self.catalog_name = catalog_name
        self.catalog = rdf.catalog_of(rdf.http_url(node))
        self.g = self.catalog.graph

    def dataset(self, table: str):
        by_table = rdf.datasets_by_table(self.g)
        assert table in by_table, f"no dataset for {table}: {sorted(by_table)}"
        dataset = by_table[table]
        return dataset, one(self.g, dataset, DCAT.distribution, f"dataset {table}")

    def schema(self, table: str) -> pa.Schema:
        with self.node.connect() as conn:
            return conn.adbc_get_table_schema(
                table, catalog_filter=self.catalog_name, db_schema_filter="public"
            )

    def sql(self, sql: str) -> list[tuple]:
        with self.node.connect() as conn:
            return query_rows(conn, sql)


@pytest.fixture(scope="module")
def facts(launcher, generated, main_node, catalog):
    """Facts for the main node's tables or a generated table (its own node in spawn mode)."""
    cache: dict[str, Facts] = {}

    def get(table: str) -> tuple[Facts, Path | None]:
        if table in MAIN_TABLES:
            node, location = main_node, main_node.tables.get(table)
        else:
            node, location = launcher.node({table: generated[table]}), generated[table]
        key = node.flight_url
        if key not in cache:
            cache[key] = Facts(node, node.catalog or catalog)
        return cache[key], Path(location) if location and launcher.remote is None else None

    return get


ALL_TABLES = [*MAIN_TABLES, *FORMAT_TABLES]


@pytest.mark.requirement("UDN-CAT-4")
@pytest.mark.parametrize("table", ALL_TABLES)
def test_columns_match_the_arrow_schema(facts, table):
    """One csvw:Column per field of the served Arrow schema, in order (udn:columnIndex from 1),
    with its name, an XSD datatype for its type, csvw:required = not nullable, udn:arrowType."""
    f, _ = facts(table)
    g = f.g
    _, distribution = f.dataset(table)
    schema_node = one(g, distribution, CSVW.tableSchema, f"distribution of {table}")
    assert (schema_node, RDF.type, CSVW.Schema) in g
    columns = list(g.objects(schema_node, CSVW.column))
    arrow = f.schema(table)
    by_index = {}
    for column in columns:
        assert (column, RDF.type, CSVW.Column) in g, column
        index = one(g, column, UDN.columnIndex, f"column {column}")
        by_index[int(index)] = column
    assert sorted(by_index) == list(range(1, len(arrow) + 1)), (
        f"{table}: column indexes {sorted(by_index)} for {len(arrow)} fields {arrow.names}"
    )
    problems = []
    for i, field in enumerate(arrow, start=1):
        column = by_index[i]
        name = str(one(g, column, CSVW.name))
        if name != field.name:
            problems.append(f"column {i}: csvw:name {name!r}, Arrow field {field.name!r}")
            continue
        datatype = one(g, column, CSVW.datatype)
        expected = _xsd_types(field)
        if expected and datatype not in expected:
            problems.append(
                f"{name}: csvw:datatype {datatype} for {field.type}; expected one of {expected}"
            )
        required = one(g, column, CSVW.required)
        if required.toPython() is not (not field.nullable):
            problems.append(f"{name}: csvw:required {required} but nullable={field.nullable}")
        arrow_type = re.sub(r"\s+", "", str(one(g, column, UDN.arrowType))).lower()
        if arrow_type not in _arrow_names(field.type):
            problems.append(f"{name}: udn:arrowType {arrow_type!r} for Arrow {field.type}")
    assert not problems, f"{table}:\n" + "\n".join(problems)


@pytest.mark.requirement("UDN-CAT-4")
@pytest.mark.parametrize("table", ALL_TABLES)
def test_row_count_is_the_count_over_flight_sql(facts, table):
    f, _ = facts(table)
    dataset, distribution = f.dataset(table)
    expected = f.sql(f"SELECT count(*) AS n FROM {table}")[0][0]
    for subject in (dataset, distribution):
        count = one(f.g, subject, UDN.rowCount, f"{subject}")
        assert count.datatype == XSD.integer, f"{subject}: {count!r}"
        assert int(count) == expected, f"{subject}: udn:rowCount {count}, count(*) = {expected}"


def _instant(value) -> dt.date | dt.datetime:
    """Dates as dates; datetimes in UTC without tzinfo (naive values are taken as they are)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    return value


@pytest.mark.requirement("UDN-CAT-4")
@pytest.mark.parametrize("table", ALL_TABLES)
def test_temporal_coverage_is_the_range_of_the_first_time_column(facts, table, remote):
    """dct:temporal: a dct:PeriodOfTime from min to max of the first date or timestamp column;
    none for a table without one (spawn mode, where no explicit period is configured)."""
    f, _ = facts(table)
    dataset, _ = f.dataset(table)
    arrow = f.schema(table)
    temporal = [field for field in arrow if _is_temporal(field.type)]
    periods = list(f.g.objects(dataset, DCT.temporal))
    if not temporal:
        if remote is None:
            assert not periods, f"{table} has no date or time column but dct:temporal {periods}"
        return
    column = temporal[0]
    lo, hi = f.sql(f'SELECT min("{column.name}") AS lo, max("{column.name}") AS hi FROM {table}')[0]
    assert len(periods) == 1, f"{table}: dct:temporal {periods} (column {column.name})"
    period = periods[0]
    assert (period, RDF.type, DCT.PeriodOfTime) in f.g
    start, end = one(f.g, period, DCAT.startDate), one(f.g, period, DCAT.endDate)
    date_column = pa.types.is_date(column.type)
    for literal, expected, which in ((start, lo, "startDate"), (end, hi, "endDate")):
        allowed = {XSD.date} if date_column else {XSD.dateTime, XSD.dateTimeStamp}
        assert literal.datatype in allowed, f"{table} {which}: {literal!r} for {column.type}"
        value = literal.toPython()
        assert not isinstance(value, Literal), f"{table} {which}: {literal!r} is not a valid date"
        assert _instant(value) == _instant(expected), (
            f"{table} {which} {literal} but {'min' if which == 'startDate' else 'max'}"
            f"({column.name}) = {expected!r}"
        )


def _source_bytes(location: Path) -> int:
    text = str(location)
    if any(c in text for c in "*?["):
        files = [Path(p) for p in glob.glob(text)]
    elif location.is_dir():
        files = [p for p in location.rglob("*") if p.is_file() and not p.name.startswith(".")]
    else:
        files = [location]
    assert files, f"no files at {location}"
    return sum(os.stat(p).st_size for p in files)


@pytest.mark.requirement("UDN-CAT-4")
@pytest.mark.parametrize("table", ALL_TABLES)
def test_byte_size_is_the_size_of_the_source_files(facts, table):
    """dcat:byteSize of a distribution: the bytes of its source files (all of a directory or
    glob). Skipped against a remote node, whose storage may hold other copies of the files."""
    f, location = facts(table)
    if location is None:
        pytest.skip("the source files of a remote node are not known")
    _, distribution = f.dataset(table)
    size = one(f.g, distribution, DCAT.byteSize, f"distribution of {table}")
    assert int(size) == _source_bytes(location), f"{table} ({location}): dcat:byteSize {size}"


# --- UDN-CAT-5: inheritance and configuration errors -----------------------------------------

CATALOG_LEVEL = """\
[node]
name = "metadata_check"

[catalog]
base_url = "https://udn.example.org"
title = "Metadata inheritance check"
description = "A node of the conformance suite with metadata at both levels."
license = "http://creativecommons.org/publicdomain/zero/1.0/"
access_rights = "public"
themes = ["GOVE", "REGI"]
languages = ["nl", "en"]
keywords = ["conformance", "inheritance"]
homepage = "https://example.org/"
spatial = ["https://identifier.overheid.nl/tooi/id/gemeente/gm0344"]
flight_endpoint_url = "grpc://udn.example.org:443"

[catalog.publisher]
name = "Catalog publisher"
uri = "https://example.org/id/catalog-publisher"

[catalog.creator]
name = "Catalog creator"
uri = "https://example.org/id/catalog-creator"

[catalog.contact_point]
name = "Catalog desk"
email = "desk@example.org"
"""

DATASET_LEVEL = """
[datasets.readings]
title = "Sensor readings"
description = "Readings generated by the conformance suite."
keywords = ["sensors"]
themes = ["ENVI"]
license = "http://creativecommons.org/licenses/by/4.0/"
access_rights = "restricted"
spatial = ["https://identifier.overheid.nl/tooi/id/gemeente/gm0363"]
temporal_column = "day"
modified = "2024-05-01"
landing_page = "https://example.org/readings"
update_frequency = "DAILY"

[datasets.readings.publisher]
name = "Dataset publisher"
uri = "https://example.org/id/dataset-publisher"

[datasets.readings.contact_point]
name = "Dataset desk"
url = "https://example.org/desk"

[datasets.readings.columns.value]
title = "Value"
description = "The measured value."
unit = "http://qudt.org/vocab/unit/MicroGM-PER-M3"

[datasets.stations]
temporal = { start = "2010-01-01", end = "2030-12-31" }
"""


def _tables_toml(tables: dict[str, Path]) -> str:
    return "".join(f'\n[[tables]]\nname = "{n}"\nlocation = "{p}"\n' for n, p in tables.items())


@pytest.fixture(scope="module")
def metadata_node(launcher, generated, tmp_path_factory):
    """readings with a [datasets] section setting everything, stations with only an explicit
    period, events with no section at all."""
    tables = {
        "readings": generated["readings"],
        "stations": generated["stations_csv"],
        "events": generated["events_ndjson"],
    }
    config = tmp_path_factory.mktemp("metadata") / "node.toml"
    config.write_text(CATALOG_LEVEL + _tables_toml(tables) + DATASET_LEVEL)
    node = launcher.spawn(["--config", str(config)], name="metadata_check")
    return node, rdf.catalog_of(node.http_url)


def _agent(g, subject, predicate) -> URIRef:
    agent = one(g, subject, predicate, f"{subject}")
    assert isinstance(agent, URIRef), f"{subject} {predicate}: {agent!r}"
    return agent


def _contact(g, subject) -> tuple[str, set[str]]:
    contact = one(g, subject, DCAT.contactPoint, f"{subject}")
    name = str(one(g, contact, VCARD.fn, f"contact point of {subject}"))
    links = {str(o) for p in (VCARD.hasEmail, VCARD.hasURL) for o in g.objects(contact, p)}
    return name, links


def _objects(g, subject, predicate) -> set:
    return set(g.objects(subject, predicate))


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5")
def test_dataset_without_a_section_inherits_the_catalog(metadata_node):
    node, cat = metadata_node
    g = cat.graph
    events = rdf.datasets_by_table(g)["events"]
    distribution = one(g, events, DCAT.distribution)
    assert one(g, events, DCT.title) == Literal("events"), "the title defaults to the table name"
    assert "events" in str(one(g, events, DCT.description))
    assert _agent(g, events, DCT.publisher) == URIRef("https://example.org/id/catalog-publisher")
    assert _agent(g, events, DCT.creator) == URIRef("https://example.org/id/catalog-creator")
    assert _contact(g, events) == ("Catalog desk", {"mailto:desk@example.org"})
    assert one(g, distribution, DCT.license) == URIRef(
        "http://creativecommons.org/publicdomain/zero/1.0/"
    )
    assert one(g, events, DCT.accessRights) == rdf.EU_ACCESS.PUBLIC
    assert _objects(g, events, DCAT.theme) == {rdf.EU_THEME.GOVE, rdf.EU_THEME.REGI}
    assert {str(k) for k in g.objects(events, DCAT.keyword)} == {"conformance", "inheritance"}
    assert _objects(g, events, DCT.spatial) == {
        URIRef("https://identifier.overheid.nl/tooi/id/gemeente/gm0344")
    }
    assert str(one(g, distribution, DCAT.accessURL)) == "grpc://udn.example.org:443"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5", "UDN-CAT-4")
def test_dataset_section_overrides_the_catalog(metadata_node):
    node, cat = metadata_node
    g = cat.graph
    readings = rdf.datasets_by_table(g)["readings"]
    distribution = one(g, readings, DCAT.distribution)
    assert one(g, readings, DCT.title) == Literal("Sensor readings")
    assert str(one(g, readings, DCT.description)) == "Readings generated by the conformance suite."
    assert {str(k) for k in g.objects(readings, DCAT.keyword)} == {"sensors"}
    assert _objects(g, readings, DCAT.theme) == {rdf.EU_THEME.ENVI}
    assert _agent(g, readings, DCT.publisher) == URIRef("https://example.org/id/dataset-publisher")
    assert _contact(g, readings) == ("Dataset desk", {"https://example.org/desk"})
    cc_by = URIRef("http://creativecommons.org/licenses/by/4.0/")
    assert one(g, distribution, DCT.license) == cc_by
    assert one(g, readings, DCT.accessRights) == rdf.EU_ACCESS.RESTRICTED
    assert _objects(g, readings, DCT.spatial) == {
        URIRef("https://identifier.overheid.nl/tooi/id/gemeente/gm0363")
    }
    modified = one(g, readings, DCT.modified)
    assert modified.toPython() == dt.date(2024, 5, 1), repr(modified)
    assert one(g, readings, DCAT.landingPage) == URIRef("https://example.org/readings")
    assert one(g, readings, DCT.accrualPeriodicity) == rdf.EU_FREQUENCY.DAILY
    # temporal_column = "day": the range of `day`, not of the first time column `ts`
    with node.connect() as conn:
        lo, hi = query_rows(conn, "SELECT min(day) AS lo, max(day) AS hi FROM readings")[0]
    period = one(g, readings, DCT.temporal)
    assert one(g, period, DCAT.startDate).toPython() == lo
    assert one(g, period, DCAT.endDate).toPython() == hi


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5")
def test_unset_creator_is_the_catalogs_even_with_a_publisher_of_its_own(metadata_node):
    """readings sets its own publisher but no creator: the creator defaults to the catalog's
    creator (UDN-CAT-5; docs/config-reference.md: `creator` default "catalog's")."""
    _, cat = metadata_node
    g = cat.graph
    readings = rdf.datasets_by_table(g)["readings"]
    creator = _agent(g, readings, DCT.creator)
    assert creator == URIRef("https://example.org/id/catalog-creator"), (
        f"dct:creator of readings is {creator}, not the catalog's creator "
        "<https://example.org/id/catalog-creator>"
    )


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5", "UDN-CAT-4")
def test_column_metadata_is_described(metadata_node):
    node, cat = metadata_node
    g = cat.graph
    readings = rdf.datasets_by_table(g)["readings"]
    schema = one(g, one(g, readings, DCAT.distribution), CSVW.tableSchema)
    columns = {str(one(g, c, CSVW.name)): c for c in g.objects(schema, CSVW.column)}
    value = columns["value"]
    assert one(g, value, CSVW.title) == Literal("Value")
    assert one(g, value, DCT.description) == Literal("The measured value.")
    assert one(g, value, QUDT.unit) == URIRef("http://qudt.org/vocab/unit/MicroGM-PER-M3")
    for name, column in columns.items():
        if name != "value":
            assert g.value(column, QUDT.unit) is None, f"{name} has a unit nobody configured"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5", "UDN-CAT-4")
def test_explicit_temporal_coverage_wins_over_the_data(metadata_node):
    _, cat = metadata_node
    g = cat.graph
    period = one(g, rdf.datasets_by_table(g)["stations"], DCT.temporal)
    assert one(g, period, DCAT.startDate).toPython() == dt.date(2010, 1, 1)
    assert one(g, period, DCAT.endDate).toPython() == dt.date(2030, 12, 31)


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5")
def test_catalog_level_metadata(metadata_node):
    _, cat = metadata_node
    g = cat.graph
    assert cat.base == "https://udn.example.org"
    assert one(g, cat.iri, DCT.title) == Literal("Metadata inheritance check")
    assert _agent(g, cat.iri, DCT.publisher) == URIRef("https://example.org/id/catalog-publisher")
    assert one(g, cat.iri, FOAF.homepage) == URIRef("https://example.org/")
    languages = {str(lang) for lang in g.objects(cat.iri, DCT.language)}
    assert len(languages) == 2, languages
    publisher = URIRef("https://example.org/id/catalog-publisher")
    assert (publisher, RDF.type, FOAF.Agent) in g
    assert one(g, publisher, FOAF.name) == Literal("Catalog publisher")


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-3", "UDN-CAT-5")
def test_metadata_node_catalog_validates(metadata_node, shacl_reports):
    """Overridden values (restricted access, another licence, a landing page, a frequency,
    units) validate as well."""
    _, cat = metadata_node
    _validate(cat.graph, "metadata node (every [datasets] key)", shacl_reports)


def _serve_expecting_exit(binary: Path, config_text: str | None, tables: dict, tmp_path: Path):
    """Run `polder serve [--config FILE] --table ...`; it must exit non-zero. Returns stderr."""
    cmd = [str(binary), "serve", "--flight", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    if config_text is not None:
        path = tmp_path / "node.toml"
        path.write_text(config_text)
        cmd += ["--config", str(path)]
    for name, location in tables.items():
        cmd += ["--table", f"{name}={location}"]
    returncode, stderr = run_expecting_exit(cmd, tmp_path, timeout=60)
    assert returncode != 0, f"exit code 0: {stderr[-1500:]}"
    assert "panic" not in stderr.lower(), stderr[-1500:]
    return stderr


REQUIRED_KEYS = [
    "base_url", "title", "description", "publisher", "contact_point", "license",
    "access_rights", "themes",
]  # fmt: skip


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5")
@pytest.mark.parametrize("case", ["no_config", "empty_catalog", "only_title"])
def test_missing_catalog_metadata_is_one_error_naming_every_key(
    polder_bin, generated, tmp_path, case
):
    config = {
        "no_config": None,
        "empty_catalog": "[catalog]\n",
        "only_title": '[catalog]\ntitle = "Only a title"\n',
    }[case]
    tables = {"readings": generated["readings"]}
    stderr = _serve_expecting_exit(polder_bin, config, tables, tmp_path)
    missing = [k for k in REQUIRED_KEYS if not (case == "only_title" and k == "title")]
    error_lines = [line for line in stderr.splitlines() if "base_url" in line]
    assert error_lines, f"no error names base_url: {stderr[-1500:]}"
    line = error_lines[0]
    unnamed = [k for k in missing if not re.search(rf"\b{k}\b", line)]
    assert not unnamed, f"the error does not name {unnamed} (all in one error): {line!r}"
    if case == "only_title":
        assert not re.search(r"\bcatalog\.title\b", line), f"title is set, yet named: {line!r}"


# name -> (extra configuration after a valid one serving readings, what the error must name)
BAD_SECTIONS = {
    "unknown_table": ('[datasets.no_such_table]\ntitle = "Ghost"\n', "no_such_table"),
    "unknown_column": (
        '[datasets.readings.columns.no_such_column]\ndescription = "Ghost"\n',
        "no_such_column",
    ),
    "dataset_theme": ('[datasets.readings]\nthemes = ["ENVIRONMENT"]\n', "ENVIRONMENT"),
    "catalog_theme": (None, "WEATHER"),
    "access_rights": ('[datasets.readings]\naccess_rights = "open"\n', "open"),
    "relative_iri": ('[datasets.readings]\nlanding_page = "example.org/x"\n', "example.org/x"),
    "date": ('[datasets.readings]\nmodified = "1 May 2024"\n', "1 May 2024"),
    "frequency": ('[datasets.readings]\nupdate_frequency = "SOMETIMES"\n', "SOMETIMES"),
}


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-5", "UDN-OPS-3")
@pytest.mark.parametrize("case", list(BAD_SECTIONS))
def test_bad_dataset_metadata_stops_startup_naming_it(polder_bin, generated, tmp_path, case):
    extra, name = BAD_SECTIONS[case]
    config = CATALOG_SECTION + "\n" + (extra or "")
    if case == "catalog_theme":
        config = CATALOG_SECTION.replace('themes = ["GOVE"]', 'themes = ["GOVE", "WEATHER"]')
        assert config != CATALOG_SECTION
    tables = {"readings": generated["readings"]}
    stderr = _serve_expecting_exit(polder_bin, config, tables, tmp_path)
    assert name in stderr, f"error does not name {name!r}: {stderr[-1500:]}"


# --- UDN-CAT-6: stable IRIs, dereferencing, deterministic output -----------------------------


@pytest.mark.requirement("UDN-CAT-6")
def test_own_iris_lie_under_the_base_url(main_catalog):
    g = main_catalog.graph
    own = rdf.own_resources(g)
    assert len(own) > 2 * len(rdf.datasets_by_table(g)), own
    outside = [str(i) for i in own if not str(i).startswith(main_catalog.base + "/")]
    assert not outside, f"not under {main_catalog.base}:\n{rdf.lines(outside)}"
    for table, dataset in rdf.datasets_by_table(g).items():
        assert str(dataset) == f"{main_catalog.base}/dataset/{table}"


def _check_dereferences(cat: rdf.Catalog, url_of) -> int:
    """GET every own resource's IRI: its description, the same triples as in /catalog (the
    triples about it and about the blank nodes they reach)."""
    problems = []
    own = rdf.own_resources(cat.graph)
    for iri in own:
        r = rdf.get(url_of(iri), "text/turtle")
        if r.status_code != 200:
            problems.append(f"{iri}: HTTP {r.status_code}")
            continue
        got = rdf.parse(r, f"GET {iri}")
        # The catalog's own IRI is `/catalog`: the whole catalog (UDN-CAT-1).
        expected = cat.graph if iri == cat.iri else rdf.description(cat.graph, iri)
        if not isomorphic(got, expected):
            problems.append(f"{iri}: {_graph_difference(got, expected)}")
    assert not problems, "\n".join(problems[:20])
    return len(own)


@pytest.mark.requirement("UDN-CAT-6", "UDN-CAT-1")
def test_every_own_iri_dereferences_to_its_description(main_catalog):
    """On the main node, whose base URL is a public name: path below the base URL on its HTTP
    address."""
    assert _check_dereferences(main_catalog, main_catalog.url_of) > 10


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-6")
def test_iris_dereference_as_they_are(sample_node):
    """A node whose base URL is its own HTTP address: GET the IRIs exactly as written."""
    cat = rdf.catalog_of(sample_node.http_url)
    assert cat.base == sample_node.http_url.rstrip("/")
    assert _check_dereferences(cat, str) > 10


@pytest.mark.requirement("UDN-CAT-6", "UDN-CAT-1")
@pytest.mark.parametrize(
    "kind", ["application/ld+json", "application/n-triples", "application/rdf+xml"]
)
def test_resource_descriptions_are_negotiated(main_catalog, kind):
    g = main_catalog.graph
    dataset = sorted(rdf.datasets_by_table(g).values())[0]
    r = rdf.get(main_catalog.url_of(dataset), kind)
    assert rdf.media_type(r) == kind
    assert "accept" in r.headers.get("Vary", "").lower(), dict(r.headers)
    assert isomorphic(rdf.parse(r, f"GET {dataset}"), rdf.description(g, dataset))
    assert rdf.get(main_catalog.url_of(dataset), "text/html").status_code == 406


@pytest.mark.requirement("UDN-CAT-6")
@pytest.mark.parametrize(
    "path",
    [
        "/dataset/no_such_table",
        "/dataset/{table}/schema/no_such_column",
        "/dataset/{table}/no-such-distribution",
        "/dataset/{table}/",
        "/catalog/more",
        "/service/no-such-service",
        "/dataset",
    ],
)
def test_iris_that_name_nothing_are_404(main_catalog, path):
    table = sorted(rdf.datasets_by_table(main_catalog.graph))[0]
    url = main_catalog.http + path.format(table=table)
    r = rdf.get(url, "text/turtle")
    assert r.status_code == 404, f"GET {url}: HTTP {r.status_code}: {r.text[:300]}"


DETERMINISM_CONFIG = """\
[node]
name = "determinism"

[catalog]
base_url = "https://udn.example.org"
title = "Determinism check"
description = "Two nodes from this file must publish the same bytes."
license = "http://creativecommons.org/publicdomain/zero/1.0/"
access_rights = "public"
themes = ["GOVE", "TRAN", "ENVI"]
keywords = ["b", "a", "c"]
languages = ["nl", "en"]
flight_endpoint_url = "grpc://udn.example.org:443"

[catalog.publisher]
name = "Determinism check"
uri = "https://example.org/id/determinism"

[catalog.contact_point]
name = "Desk"
email = "desk@example.org"
"""


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-CAT-6")
def test_same_configuration_gives_byte_identical_output(launcher, generated, tmp_path):
    """Two node processes (on other ports) from one configuration and the same files: the same
    bytes for /catalog in every format, for a resource, and for the SPARQL service
    description."""
    tables = {
        "readings": generated["readings"],
        "stations": generated["stations_csv"],
        "areas": generated["areas_geojson"],
        "parts": generated["parts_dir"],
    }
    config = tmp_path / "node.toml"
    config.write_text(DETERMINISM_CONFIG + _tables_toml(tables))
    nodes = [launcher.spawn(["--config", str(config)], name="determinism") for _ in range(2)]
    try:
        paths = ["/catalog", "/dataset/readings", "/dataset/areas/schema", "/sparql"]
        for path in paths:
            for kind in [None, "application/ld+json", "application/n-triples"]:
                if path == "/sparql" and kind:
                    continue
                a, b = (rdf.get(f"{n.http_url}{path}", kind) for n in nodes)
                assert a.status_code == b.status_code == 200, (path, a.status_code, b.status_code)
                assert a.content == b.content, (
                    f"GET {path} ({kind}) differs between two nodes with the same configuration:"
                    f"\n{_first_difference(a.text, b.text)}"
                )
    finally:
        for n in nodes:
            n.stop()


# --- helpers ---------------------------------------------------------------------------------


def _graph_difference(got, expected) -> str:
    a, b = to_isomorphic(got), to_isomorphic(expected)
    only_got = sorted(a - b, key=str)[:10]
    only_expected = sorted(b - a, key=str)[:10]
    return (
        f"{len(got)} vs {len(expected)} triples; only in the response:\n{rdf.lines(only_got)}\n"
        f"only expected:\n{rdf.lines(only_expected)}"
    )


def _first_difference(a: str, b: str) -> str:
    for i, (la, lb) in enumerate(zip(a.splitlines(), b.splitlines())):
        if la != lb:
            return f"line {i + 1}:\n  {la}\n  {lb}"
    return f"lengths {len(a)} and {len(b)}"
