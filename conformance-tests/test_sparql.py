"""UDN-SPARQL-1 … UDN-SPARQL-4: the SPARQL 1.1 endpoint over the node's catalog (`/sparql`).

Every answer is compared with rdflib's own SPARQL 1.1 evaluation of the same query over the
Turtle the node serves on `GET /catalog`: the expected answers are never written down. The raw
protocol is driven with `requests`; SPARQLWrapper is used as one real client. Tests on the main
node use only its HTTP address (`UDN_HTTP_URL` for a remote node); the limits are also checked
on a node started with small ones (`spawns_node`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
import time
import warnings
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import XSD
from rdflib.plugins.stores.sparqlstore import SPARQLStore
from rdflib.query import Result
from rdflib.term import Variable
from SPARQLWrapper import JSON, JSONLD, POST, POSTDIRECTLY, TURTLE, URLENCODED, XML, SPARQLWrapper

from udn_conformance import rdf
from udn_conformance.rdf import DCAT, RDF, SD, UDN, XSD, one

TIMEOUT_S = 60
SELECT_FORMATS = {
    "application/sparql-results+json": "json",
    "application/sparql-results+xml": "xml",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
}
GRAPH_FORMATS = list(rdf.RDF_FORMATS)


def _sparql(http: str) -> str:
    return f"{http}/sparql"


def run(http: str, query: str, how: str = "get", accept: str | None = None, **params):
    """Send `query` the way the protocol allows: GET, POST form, or POST sparql-query."""
    headers = {"Accept": accept} if accept else {}
    url = _sparql(http)
    if how == "get":
        fields = {"query": query, **params}
        return requests.get(url, params=fields, headers=headers, timeout=TIMEOUT_S)
    if how == "form":
        fields = {"query": query, **params}
        return requests.post(url, data=fields, headers=headers, timeout=TIMEOUT_S)
    if how == "direct":
        headers["Content-Type"] = "application/sparql-query"
        return requests.post(
            url, params=params, data=query.encode(), headers=headers, timeout=TIMEOUT_S
        )
    raise ValueError(how)


# --- comparing answers -----------------------------------------------------------------------

_INTEGERS = {
    XSD.integer, XSD.long, XSD.int, XSD.short, XSD.byte, XSD.nonNegativeInteger,
    XSD.positiveInteger, XSD.negativeInteger, XSD.nonPositiveInteger, XSD.unsignedLong,
    XSD.unsignedInt, XSD.unsignedShort, XSD.unsignedByte,
}  # fmt: skip
_NUMERIC = _INTEGERS | {XSD.decimal, XSD.double, XSD.float}


def _family(datatype) -> str:
    return "integer" if datatype in _INTEGERS else str(datatype)


def norm(term):
    """A comparable form of an RDF term: blank nodes alike, xsd:string as a plain literal (RDF
    1.1 makes them the same), numbers by value and kind: "1.50"^^xsd:decimal is
    "1.5"^^xsd:decimal, and the integer types derived from xsd:integer count as one kind here
    (whether stored literals keep their exact datatype is checked on its own, in
    test_stored_literals_keep_their_datatype)."""
    if term is None:
        return None
    if isinstance(term, BNode):
        return ("bnode",)
    if isinstance(term, URIRef):
        return ("iri", str(term))
    if isinstance(term, Literal):
        if term.datatype in _NUMERIC:
            try:
                value = float(Decimal(str(term)))
            except ArithmeticError:
                return ("lit", str(term), str(term.datatype), None)
            number = float(f"{value:.12g}") if math.isfinite(value) else value
            return ("num", _family(term.datatype), number)
        datatype = None if term.datatype in (None, XSD.string) else str(term.datatype)
        return ("lit", str(term), datatype, term.language)
    raise TypeError(term)


def canonical(g: Graph) -> Graph:
    """The graph with integer literals typed xsd:integer (see `norm`)."""
    out = Graph()
    for s, p, o in g:
        if isinstance(o, Literal) and o.datatype in _INTEGERS and o.datatype != XSD.integer:
            try:
                o = Literal(int(str(o)), datatype=XSD.integer)
            except ValueError:
                pass
        out.add((s, p, o))
    return out


def same_graph(got: Graph, expected: Graph) -> bool:
    """Isomorphic, with integer literals compared as xsd:integer (see `norm`)."""
    return isomorphic(canonical(got), canonical(expected))


def norm_text(term):
    """For CSV, which carries no types: the term's text (blank nodes alike), numbers by value."""
    if term is None:
        return ""
    if isinstance(term, BNode):
        return ("bnode",)
    text = str(term)
    if isinstance(term, Literal) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return ("num", float(f"{float(text):.12g}"))
    return text


def rows_of(result: Result, variables: list[str], text: bool = False) -> list[tuple]:
    f = norm_text if text else norm
    names = [Variable(v) for v in variables]
    return [tuple(f(binding.get(v)) for v in names) for binding in result.bindings]


def parse_select(response: requests.Response, fmt: str) -> Result:
    return Result.parse(io.BytesIO(response.content), format=fmt)


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=repr)


def compare_select(got: list[tuple], expected: list[tuple], ordered: bool, query: str) -> None:
    if not ordered:
        got, expected = _sorted(got), _sorted(expected)
    if got != expected:
        missing = [r for r in expected if r not in got][:8]
        extra = [r for r in got if r not in expected][:8]
        raise AssertionError(
            f"{len(got)} rows from the node, {len(expected)} from rdflib for\n{query}\n"
            f"missing:\n{rdf.lines(missing)}\nunexpected:\n{rdf.lines(extra)}"
            + ("" if missing or extra else f"\nsame rows, other order:\n{rdf.lines(got[:10])}")
        )


# --- the queries -----------------------------------------------------------------------------

P = rdf.PREFIXES + "\n"


def select_queries(catalog: str) -> dict[str, tuple[str, bool]]:
    """name -> (query, whether ORDER BY fixes the order of every row)."""
    return {
        "datasets_titles_rows": (P + """
            SELECT ?table ?title ?rows WHERE {
              ?d a dcat:Dataset ; dct:title ?title ; udn:sqlTable ?table ; udn:rowCount ?rows
            } ORDER BY ?table""", True),
        "themes_with_counts": (P + """
            SELECT ?theme (COUNT(?d) AS ?n) WHERE { ?d a dcat:Dataset ; dcat:theme ?theme }
            GROUP BY ?theme ORDER BY DESC(?n) ?theme""", True),
        "columns_of_lineitem": (P + """
            SELECT ?idx ?name ?type ?required WHERE {
              ?d udn:sqlTable ?t FILTER(STRENDS(?t, ".lineitem"))
              ?d dcat:distribution/csvw:tableSchema/csvw:column ?c .
              ?c csvw:name ?name ; csvw:datatype ?type ; udn:columnIndex ?idx ;
                 csvw:required ?required
            } ORDER BY ?idx""", True),
        "optional_temporal": (P + """
            SELECT ?table ?start ?end WHERE {
              ?d a dcat:Dataset ; udn:sqlTable ?table
              OPTIONAL { ?d dct:temporal ?p . ?p dcat:startDate ?start ; dcat:endDate ?end }
            } ORDER BY ?table""", True),
        "filter_numeric_and_regex": (P + """
            SELECT ?table ?rows WHERE {
              ?d udn:sqlTable ?table ; udn:rowCount ?rows
              FILTER(?rows > 100 && REGEX(?table, "\\\\.(l|o|p)[a-z]*$"))
            } ORDER BY DESC(?rows) ?table""", True),
        "aggregates": (P + """
            SELECT (COUNT(?d) AS ?datasets) (SUM(?rows) AS ?total) (MIN(?rows) AS ?least)
                   (MAX(?rows) AS ?most) (AVG(?rows) AS ?mean)
            WHERE { ?d a dcat:Dataset ; udn:rowCount ?rows }""", True),
        "columns_per_dataset_having": (P + """
            SELECT ?table (COUNT(?c) AS ?columns) (COUNT(DISTINCT ?type) AS ?types) WHERE {
              ?d udn:sqlTable ?table ; dcat:distribution/csvw:tableSchema/csvw:column ?c .
              ?c csvw:datatype ?type
            } GROUP BY ?table HAVING (COUNT(?c) > 4) ORDER BY DESC(?columns) ?table""", True),
        "distinct_datatypes": (P + """
            SELECT DISTINCT ?type WHERE { ?c a csvw:Column ; csvw:datatype ?type }
            ORDER BY ?type""", True),
        "path_from_catalog": (P + """
            SELECT ?catalogTitle ?table WHERE {
              ?cat a dcat:Catalog ; dct:title ?catalogTitle ; dcat:dataset/udn:sqlTable ?table
            }""", False),
        "not_exists": (P + """
            SELECT ?table WHERE {
              ?d a dcat:Dataset ; udn:sqlTable ?table FILTER NOT EXISTS { ?d dct:temporal ?x }
            } ORDER BY ?table""", True),
        "minus": (P + """
            SELECT ?c WHERE { ?c a csvw:Column MINUS { ?c csvw:datatype xsd:string } }""", False),
        "limit_offset": (P + """
            SELECT ?name ?table WHERE {
              ?d udn:sqlTable ?table ; dcat:distribution/csvw:tableSchema/csvw:column ?c .
              ?c csvw:name ?name
            } ORDER BY ?name ?table LIMIT 7 OFFSET 3""", True),
        "bind_functions": (P + """
            SELECT ?table ?len ?upper ?short WHERE {
              ?d a dcat:Dataset ; udn:sqlTable ?table ; dct:title ?title
              BIND(STRLEN(?title) AS ?len)
              BIND(UCASE(STR(?title)) AS ?upper)
              BIND(IF(STRLEN(?title) > 8, CONCAT(SUBSTR(?title, 1, 8), "..."), ?title) AS ?short)
            } ORDER BY ?table""", True),
        "union_titles": (P + """
            SELECT ?kind ?title WHERE {
              { ?x a dcat:Dataset ; dct:title ?title BIND("dataset" AS ?kind) }
              UNION
              { ?x a dcat:DataService ; dct:title ?title BIND("service" AS ?kind) }
            }""", False),
        "values_and_datatype": (P + f"""
            SELECT ?sql ?dt ?isIri WHERE {{
              VALUES ?sql {{ "{catalog}.public.nation" "{catalog}.public.region" "no.such.table" }}
              ?d udn:sqlTable ?sql ; udn:rowCount ?n ; dcat:distribution ?dist
              BIND(DATATYPE(?sql) AS ?dt)
              BIND(isIRI(?dist) AS ?isIri)
            }} ORDER BY ?sql""", True),
        "subquery": (P + """
            SELECT ?table ?rows WHERE {
              { SELECT (MAX(?r) AS ?rows) WHERE { ?x udn:rowCount ?r ; a dcat:Dataset } }
              ?d a dcat:Dataset ; udn:rowCount ?rows ; udn:sqlTable ?table
            }""", False),
        "all_triples": ("SELECT ?s ?p ?o WHERE { ?s ?p ?o }", False),
        "triple_count": ("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", True),
    }


def ask_queries(catalog: str) -> dict[str, str]:
    return {
        "lineitem_served": P + f'ASK {{ ?d udn:sqlTable "{catalog}.public.lineitem" }}',
        "no_such_table": P + f'ASK {{ ?d udn:sqlTable "{catalog}.public.no_such_table" }}',
        "every_dataset_counted": P + """
            ASK { ?d a dcat:Dataset FILTER NOT EXISTS { ?d udn:rowCount ?n } }""",
    }


def graph_queries() -> dict[str, str]:
    return {
        "construct_titles": P + """
            CONSTRUCT { ?d dct:title ?t ; udn:rowCount ?n }
            WHERE { ?d a dcat:Dataset ; dct:title ?t ; udn:rowCount ?n }""",
        "construct_columns_with_bnodes": P + """
            CONSTRUCT { ?d <urn:udn:test#column> [ <urn:udn:test#name> ?name ] }
            WHERE { ?d a dcat:Dataset ; dcat:distribution/csvw:tableSchema/csvw:column ?c .
                    ?c csvw:name ?name }""",
        "construct_where": P + "CONSTRUCT WHERE { ?s a dcat:DataService ; dcat:endpointURL ?e }",
    }


@pytest.fixture(scope="module")
def reference(main_catalog) -> Graph:
    """The catalog as rdflib reads it from `GET /catalog`: the reference engine's data."""
    return main_catalog.graph


@pytest.fixture(scope="module")
def selects(catalog):
    return select_queries(catalog)


# --- UDN-SPARQL-1: the protocol and the answers ----------------------------------------------

SELECT_NAMES = list(select_queries("x"))


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("name", SELECT_NAMES)
def test_select_answers_equal_rdflib(main_http, reference, selects, name):
    query, ordered = selects[name]
    r = run(main_http, query)
    assert r.status_code == 200, f"{name}: HTTP {r.status_code}: {r.text[:1000]}"
    assert rdf.media_type(r) == "application/sparql-results+json", r.headers
    got = parse_select(r, "json")
    expected = reference.query(query)
    variables = [str(v) for v in expected.vars]
    assert [str(v) for v in got.vars] == variables, f"head vars {got.vars}, rdflib {variables}"
    compare_select(rows_of(got, variables), rows_of(expected, variables), ordered, query)


@pytest.mark.requirement("UDN-SPARQL-1")
def test_default_graph_is_the_catalog(main_http, reference):
    """COUNT(*) over the endpoint's default graph is the number of triples of /catalog."""
    r = run(main_http, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")
    got = parse_select(r, "json")
    assert int(list(got)[0][0]) == len(reference)


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("how", ["get", "form", "direct"])
@pytest.mark.parametrize("name", ["datasets_titles_rows", "columns_of_lineitem"])
def test_three_ways_to_send_a_query(main_http, reference, selects, how, name):
    query, ordered = selects[name]
    r = run(main_http, query, how)
    assert r.status_code == 200, f"{how}: HTTP {r.status_code}: {r.text[:500]}"
    got = parse_select(r, "json")
    expected = reference.query(query)
    variables = [str(v) for v in expected.vars]
    compare_select(rows_of(got, variables), rows_of(expected, variables), ordered, query)


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("kind", list(SELECT_FORMATS))
@pytest.mark.parametrize("name", ["datasets_titles_rows", "optional_temporal", "aggregates"])
def test_select_result_formats(main_http, reference, selects, kind, name):
    """SPARQL JSON, XML, CSV and TSV: each parsed by rdflib's result parsers, same answers."""
    query, ordered = selects[name]
    r = run(main_http, query, "form", accept=kind)
    assert r.status_code == 200, f"{kind}: HTTP {r.status_code}: {r.text[:500]}"
    assert rdf.media_type(r) == kind, f"asked {kind}, got {r.headers.get('Content-Type')}"
    fmt = SELECT_FORMATS[kind]
    if fmt == "xml":
        ElementTree.fromstring(r.content)  # well-formed
    if fmt == "json":
        json.loads(r.content)
    got = parse_select(r, fmt)
    expected = reference.query(query)
    variables = [str(v) for v in expected.vars]
    text = fmt == "csv"  # CSV carries no datatypes
    if fmt == "csv":
        header = next(csv.reader(io.StringIO(r.content.decode())))
        assert header == variables, f"CSV header {header}, variables {variables}"
    compare_select(
        rows_of(got, variables, text=text), rows_of(expected, variables, text=text), ordered, query
    )


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize(
    "kind", ["application/sparql-results+json", "application/sparql-results+xml"]
)
@pytest.mark.parametrize("name", list(ask_queries("x")))
def test_ask_answers_equal_rdflib(main_http, reference, catalog, kind, name):
    query = ask_queries(catalog)[name]
    r = run(main_http, query, "get", accept=kind)
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}"
    assert rdf.media_type(r) == kind
    got = parse_select(r, SELECT_FORMATS[kind])
    assert got.type == "ASK"
    assert got.askAnswer == reference.query(query).askAnswer, query


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("kind", [None, *GRAPH_FORMATS], ids=str)
@pytest.mark.parametrize("name", list(graph_queries()))
def test_construct_answers_equal_rdflib(main_http, reference, kind, name):
    """CONSTRUCT results: Turtle by default, JSON-LD and N-Triples by Accept; the same graph as
    rdflib constructs (blank nodes up to renaming)."""
    query = graph_queries()[name]
    r = run(main_http, query, "form", accept=kind)
    got = rdf.parse(r, f"CONSTRUCT {name} (Accept: {kind})")
    if kind is None:
        assert rdf.media_type(r) == "text/turtle"
    expected = reference.query(query).graph
    assert len(expected) > 0
    assert same_graph(got, expected), (
        f"{len(got)} triples from the node, {len(expected)} from rdflib for {name}"
    )


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("how", ["get", "form", "direct"])
def test_construct_three_ways(main_http, reference, how):
    query = graph_queries()["construct_titles"]
    got = rdf.parse(run(main_http, query, how), f"CONSTRUCT via {how}")
    assert same_graph(got, reference.query(query).graph)


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("kind", [None, *GRAPH_FORMATS], ids=str)
def test_describe_a_dataset(main_http, reference, kind):
    """DESCRIBE's shape is the engine's choice (SPARQL 1.1 §16.4); it must at least hold every
    triple with the resource as subject, and nothing that is not in the catalog."""
    dataset = sorted(rdf.datasets_by_table(reference).values())[0]
    r = run(main_http, f"DESCRIBE <{dataset}>", "get", accept=kind)
    got = rdf.parse(r, f"DESCRIBE (Accept: {kind})")
    if kind is None:
        assert rdf.media_type(r) == "text/turtle"
    got, catalog = canonical(got), canonical(reference)
    about = list(catalog.triples((dataset, None, None)))
    missing = [t for t in about if not isinstance(t[2], BNode) and t not in got]
    missing += [
        (dataset, p, "[blank node]") for _, p, o in about
        if isinstance(o, BNode) and not any(isinstance(x, BNode) for x in got.objects(dataset, p))
    ]  # fmt: skip
    assert not missing, f"DESCRIBE <{dataset}> lacks:\n{rdf.lines(missing[:10])}"
    ground = {t for t in got if not any(isinstance(x, BNode) for x in t)}
    foreign = [t for t in ground if t not in catalog]
    assert not foreign, f"DESCRIBE returned triples not in the catalog:\n{rdf.lines(foreign[:10])}"


# Datatypes derived from xsd:integer, whose DATATYPE() UDN-SPARQL-1 lets be xsd:integer.
_INTEGER_SUBTYPES = {
    f"http://www.w3.org/2001/XMLSchema#{name}"
    for name in ("nonNegativeInteger", "positiveInteger", "nonPositiveInteger", "negativeInteger",
                 "long", "int", "short", "byte", "unsignedLong", "unsignedInt", "unsignedShort",
                 "unsignedByte")
}  # fmt: skip


@pytest.mark.requirement("UDN-SPARQL-1")
def test_stored_literals_keep_their_datatype(main_http, reference):
    """The datatypes of the catalog's literals, as the endpoint's DATATYPE() sees them, are
    those of `GET /catalog`, except that an xsd:integer subtype may be xsd:integer (the
    latitude UDN-SPARQL-1 gives)."""
    query = """SELECT ?p ?datatype (COUNT(*) AS ?n)
               WHERE { ?s ?p ?o FILTER(isLiteral(?o)) } GROUP BY ?p (DATATYPE(?o) AS ?datatype)"""
    r = run(main_http, query, "form")
    assert r.status_code == 200, r.text[:500]
    got = {(str(row[0]), str(row[1])): int(row[2]) for row in parse_select(r, "json")}
    expected = {(str(row[0]), str(row[1])): int(row[2]) for row in reference.query(query)}
    for (p, dt), n in list(expected.items()):
        if dt in _INTEGER_SUBTYPES and (p, dt) not in got and (p, str(XSD.integer)) in got:
            expected[(p, str(XSD.integer))] = expected.get((p, str(XSD.integer)), 0) + n
            del expected[(p, dt)]
    differ = sorted(
        f"{p}: {dt} x{expected.get((p, dt), 0)} in /catalog, x{got.get((p, dt), 0)} at /sparql"
        for p, dt in set(got) | set(expected)
        if got.get((p, dt)) != expected.get((p, dt))
    )
    assert not differ, "literal datatypes differ:\n" + "\n".join(differ)


@pytest.mark.requirement("UDN-SPARQL-1")
def test_construct_of_everything_is_the_catalog(main_http, reference):
    """CONSTRUCT WHERE { ?s ?p ?o }: exactly the graph of `GET /catalog`, term for term."""
    got = rdf.parse(run(main_http, "CONSTRUCT WHERE { ?s ?p ?o }", "form"), "CONSTRUCT all")
    if not isomorphic(got, reference):
        ground = [t for t in got if not any(isinstance(x, BNode) for x in t)]
        diff = [t for t in ground if t not in reference][:8]
        raise AssertionError(
            f"{len(got)} triples from the endpoint, {len(reference)} in /catalog; e.g. at "
            f"/sparql but not in /catalog:\n{rdf.lines(diff)}"
        )


# SPARQLWrapper: a SPARQL client as many scripts use it (default settings send the query with
# `format`/`output`/`results` parameters next to the Accept header, as it does for every server).


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize(
    "method", ["GET", "POST-form", "POST-direct"], ids=["get", "post_form", "post_direct"]
)
def test_sparqlwrapper_select(main_http, reference, selects, method):
    query, ordered = selects["columns_per_dataset_having"]
    client = SPARQLWrapper(_sparql(main_http))
    client.setQuery(query)
    client.setReturnFormat(JSON)
    client.setTimeout(TIMEOUT_S)
    if method != "GET":
        client.setMethod(POST)
        client.setRequestMethod(URLENCODED if method == "POST-form" else POSTDIRECTLY)
    answer = client.queryAndConvert()
    got = Result.parse(io.BytesIO(json.dumps(answer).encode()), format="json")
    expected = reference.query(query)
    variables = [str(v) for v in expected.vars]
    compare_select(rows_of(got, variables), rows_of(expected, variables), ordered, query)


@pytest.mark.requirement("UDN-SPARQL-1")
def test_sparqlwrapper_xml_and_ask(main_http, reference, catalog):
    client = SPARQLWrapper(_sparql(main_http))
    client.setTimeout(TIMEOUT_S)
    query = ask_queries(catalog)["lineitem_served"]
    client.setQuery(query)
    client.setReturnFormat(JSON)
    assert client.queryAndConvert()["boolean"] is reference.query(query).askAnswer
    client.setReturnFormat(XML)
    document = client.queryAndConvert()  # an xml.dom.minidom Document
    text = document.getElementsByTagName("boolean")[0].firstChild.data
    assert text == str(reference.query(query).askAnswer).lower()


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("fmt", [TURTLE, JSONLD])
def test_sparqlwrapper_construct(main_http, reference, fmt):
    query = graph_queries()["construct_titles"]
    client = SPARQLWrapper(_sparql(main_http))
    client.setTimeout(TIMEOUT_S)
    client.setQuery(query)
    client.setReturnFormat(fmt)
    answer = client.queryAndConvert()
    if isinstance(answer, Graph):
        got = answer
    else:
        got = Graph().parse(data=answer, format="turtle" if fmt == TURTLE else "json-ld")
    assert same_graph(got, reference.query(query).graph)


# SPARQLWrapper with its default settings: asks for `application/sparql-results+xml` (SELECT,
# ASK) and `application/rdf+xml` (CONSTRUCT, DESCRIBE).


def _client(http: str, **kwargs) -> SPARQLWrapper:
    """SPARQLWrapper with its default settings (return format XML, GET)."""
    client = SPARQLWrapper(f"{http}/sparql", **kwargs)
    client.setTimeout(TIMEOUT_S)
    return client


def _query(client: SPARQLWrapper, query: str):
    """Runs `query` and converts the answer; SPARQLWrapper's warning that the endpoint sent
    another format than it asked for fails the test."""
    client.setQuery(query)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return client.query().convert()




@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("name", ["datasets_titles_rows", "optional_temporal", "aggregates"])
def test_sparqlwrapper_default_select(main_http, reference, catalog, name):
    """SELECT answered in SPARQL XML, as SPARQLWrapper asks by default."""
    query, ordered = select_queries(catalog)[name]
    document = _query(_client(main_http), query)  # an xml.dom.minidom Document
    got = Result.parse(io.BytesIO(document.toxml("utf-8")), format="xml")
    expected = reference.query(query)
    variables = [str(v) for v in expected.vars]
    compare_select(rows_of(got, variables), rows_of(expected, variables), ordered, query)


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("name", list(ask_queries("x")))
def test_sparqlwrapper_default_ask(main_http, reference, catalog, name):
    query = ask_queries(catalog)[name]
    document = _query(_client(main_http), query)
    text = document.getElementsByTagName("boolean")[0].firstChild.data
    assert text == str(reference.query(query).askAnswer).lower(), query


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("name", list(graph_queries()))
def test_sparqlwrapper_default_construct(main_http, reference, name):
    """CONSTRUCT answered in RDF/XML, which SPARQLWrapper converts to an rdflib graph."""
    query = graph_queries()[name]
    got = _query(_client(main_http), query)
    assert isinstance(got, Graph), f"SPARQLWrapper returned {type(got)}, not a graph"
    expected = reference.query(query).graph
    assert same_graph(got, expected), f"{len(got)} triples, rdflib constructs {len(expected)}"


@pytest.mark.requirement("UDN-SPARQL-1")
def test_sparqlwrapper_default_describe_a_dataset(main_http, reference):
    """DESCRIBE <dataset> holds every triple of the catalog with the dataset as subject."""
    dataset = sorted(rdf.datasets_by_table(reference).values())[0]
    got = _query(_client(main_http), f"DESCRIBE <{dataset}>")
    assert isinstance(got, Graph), f"SPARQLWrapper returned {type(got)}, not a graph"
    got, catalog = canonical(got), canonical(reference)
    about = [t for t in catalog.triples((dataset, None, None)) if not isinstance(t[2], BNode)]
    missing = [t for t in about if t not in got]
    assert about and not missing, f"DESCRIBE <{dataset}> lacks:\n{rdf.lines(missing[:10])}"


@pytest.mark.requirement("UDN-SPARQL-1")
def test_sparqlwrapper_with_the_catalog_as_default_graph(main_http, main_catalog):
    """SPARQLWrapper's `defaultGraph` (sent as `default-graph-uri`) naming the catalog's graph,
    whose IRI is the catalog's."""
    client = _client(main_http, defaultGraph=str(main_catalog.iri))
    document = _query(client, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")
    got = Result.parse(io.BytesIO(document.toxml("utf-8")), format="xml")
    assert int(list(got)[0][0]) == len(main_catalog.graph)


# rdflib's SPARQLStore: sends `application/sparql-results+xml, application/rdf+xml` for every
# query.


@pytest.fixture(params=["no identifier", "catalog graph"])
def store_graph(request, main_http, main_catalog):
    """A read-only rdflib graph over the endpoint; with the catalog's IRI as identifier, rdflib
    sends it as `default-graph-uri` with every query."""
    store = SPARQLStore(f"{main_http}/sparql", timeout=TIMEOUT_S)
    if request.param == "no identifier":
        graph = Graph(store=store)
    else:
        graph = Graph(store=store, identifier=URIRef(str(main_catalog.iri)))
    yield graph
    graph.close()


@pytest.mark.requirement("UDN-SPARQL-1")
def test_sparqlstore_select_ask_construct(store_graph, reference, catalog):
    query, ordered = select_queries(catalog)["columns_per_dataset_having"]
    expected = reference.query(query)
    variables = [str(v) for v in expected.vars]
    got = store_graph.query(query)
    compare_select(rows_of(got, variables), rows_of(expected, variables), ordered, query)
    for ask in ask_queries(catalog).values():
        assert store_graph.query(ask).askAnswer is reference.query(ask).askAnswer, ask
    construct = graph_queries()["construct_titles"]
    got_graph = store_graph.query(construct).graph
    assert same_graph(got_graph, reference.query(construct).graph)


@pytest.mark.requirement("UDN-SPARQL-1")
def test_sparqlstore_reads_triples(store_graph, reference):
    """The graph API on the store: length, and the triples about a dataset."""
    assert len(store_graph) == len(reference)
    dataset = sorted(rdf.datasets_by_table(reference).values())[0]
    got = {(p, o) for _, p, o in store_graph.triples((dataset, None, None))}
    expected = {(p, o) for _, p, o in reference.triples((dataset, None, None))}
    ground = {(p, o) for p, o in expected if not isinstance(o, BNode)}
    assert ground <= got and len(got) == len(expected), (
        f"{len(got)} triples about {dataset} through the store, {len(expected)} in /catalog"
    )


# --- UDN-SPARQL-2: service description -------------------------------------------------------

RESULT_FORMATS = {
    rdf.FORMATS_NS[n]
    for n in [
        "SPARQL_Results_JSON", "SPARQL_Results_XML", "SPARQL_Results_CSV",
        "SPARQL_Results_TSV", "Turtle", "JSON-LD", "N-Triples", "RDF_XML",
    ]
}  # fmt: skip


@pytest.fixture(scope="module")
def service_description(main_http) -> Graph:
    r = requests.get(_sparql(main_http), timeout=TIMEOUT_S)
    graph = rdf.parse(r, "GET /sparql")
    assert rdf.media_type(r) == "text/turtle"
    return graph


@pytest.mark.requirement("UDN-SPARQL-2")
def test_service_description(service_description, main_catalog):
    """An sd:Service whose sd:endpoint is the catalog's SPARQL endpoint URL, speaking SPARQL 1.1
    Query, listing the eight result formats by their W3C format IRIs."""
    g = service_description
    services = list(g.subjects(RDF.type, SD.Service))
    assert len(services) == 1, f"sd:Service resources: {services}"
    service = services[0]
    endpoint = one(g, service, SD.endpoint)
    sparql_services = [
        s for s in main_catalog.graph.subjects(RDF.type, DCAT.DataService)
        if str(main_catalog.graph.value(s, DCAT.endpointURL) or "").endswith("/sparql")
    ]  # fmt: skip
    assert len(sparql_services) == 1, sparql_services
    assert endpoint == main_catalog.graph.value(sparql_services[0], DCAT.endpointURL)
    assert (service, SD.supportedLanguage, SD.SPARQL11Query) in g
    formats = set(g.objects(service, SD.resultFormat))
    assert RESULT_FORMATS <= formats, f"result formats missing: {RESULT_FORMATS - formats}"
    assert (service, SD.supportedLanguage, SD.SPARQL11Update) not in g, "the endpoint is read-only"


@pytest.mark.requirement("UDN-SPARQL-2")
def test_service_description_names_the_catalog_graph(service_description, main_catalog):
    """The graphs a request may name (sd:availableGraphs): the catalog's, by the catalog's
    IRI."""
    g = service_description
    (service,) = list(g.subjects(RDF.type, SD.Service))
    names = {
        name
        for collection in g.objects(service, SD.availableGraphs)
        for named in g.objects(collection, SD.namedGraph)
        for name in g.objects(named, SD.name)
    }
    assert names == {main_catalog.iri}, f"sd:availableGraphs names {names}"


@pytest.mark.requirement("UDN-SPARQL-2")
def test_sparql_data_service_describes_itself_with_the_service_description(main_catalog):
    g = main_catalog.graph
    endpoint = URIRef(f"{main_catalog.base}/sparql")
    (service,) = list(g.subjects(DCAT.endpointURL, endpoint))
    description = one(g, service, DCAT.endpointDescription)
    doc = rdf.parse(rdf.get(main_catalog.url_of(description)), f"GET {description}")
    assert list(doc.subjects(RDF.type, SD.Service)), f"{description} holds no sd:Service"


# --- UDN-SPARQL-3: read-only -----------------------------------------------------------------

INSERT = "INSERT DATA { <urn:udn:test:s> <urn:udn:test:p> \"inserted\" }"
UPDATES = {
    "update_form": lambda http: requests.post(
        _sparql(http), data={"update": INSERT}, timeout=TIMEOUT_S
    ),
    "sparql_update_body": lambda http: requests.post(
        _sparql(http), data=INSERT.encode(),
        headers={"Content-Type": "application/sparql-update"}, timeout=TIMEOUT_S,
    ),
    "insert_as_query_get": lambda http: run(http, INSERT, "get"),
    "insert_as_query_form": lambda http: run(http, INSERT, "form"),
    "insert_as_query_direct": lambda http: run(http, INSERT, "direct"),
    "delete_where_form": lambda http: requests.post(
        _sparql(http), data={"update": "DELETE WHERE { ?s ?p ?o }"}, timeout=TIMEOUT_S
    ),
    "clear_all_as_query": lambda http: run(http, "CLEAR ALL", "form"),
    "drop_default_update": lambda http: requests.post(
        _sparql(http), data=b"DROP DEFAULT",
        headers={"Content-Type": "application/sparql-update"}, timeout=TIMEOUT_S,
    ),
    "load_update": lambda http: requests.post(
        _sparql(http), data={"update": "LOAD <http://127.0.0.1:9/data.ttl>"}, timeout=TIMEOUT_S
    ),
}  # fmt: skip


@pytest.mark.requirement("UDN-SPARQL-3")
@pytest.mark.parametrize("case", list(UPDATES))
def test_updates_are_403_and_change_nothing(main_http, case):
    """Refused, and neither the catalog nor what the endpoint answers changed."""
    count_all = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    before = rdf.get(f"{main_http}/catalog", "application/n-triples").content
    count_before = int(list(parse_select(run(main_http, count_all), "json"))[0][0])
    r = UPDATES[case](main_http)
    assert r.status_code == 403, f"{case}: HTTP {r.status_code}: {r.text[:500]}"
    assert rdf.media_type(r) == "text/plain", r.headers
    after = rdf.get(f"{main_http}/catalog", "application/n-triples").content
    assert after == before, f"{case} changed the catalog"
    assert int(list(parse_select(run(main_http, count_all), "json"))[0][0]) == count_before
    ask = parse_select(run(main_http, "ASK { <urn:udn:test:s> ?p ?o }"), "json")
    assert ask.askAnswer is False


# --- UDN-SPARQL-4: errors and limits ---------------------------------------------------------


def _expect_error(r: requests.Response, status: int, what: str) -> str:
    assert r.status_code == status, (
        f"{what}: HTTP {r.status_code} (expected {status}): {r.text[:500]}"
    )
    assert rdf.media_type(r) == "text/plain", f"{what}: error as {r.headers.get('Content-Type')}"
    assert r.text.strip(), f"{what}: empty error message"
    return r.text


def _answers(http: str, timeout: float = 20) -> None:
    """The endpoint answers a normal query correctly (retrying while a slot is released)."""
    deadline = time.monotonic() + timeout
    while True:
        r = run(http, P + "SELECT (COUNT(?d) AS ?n) WHERE { ?d a dcat:Dataset }", "form")
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, f"the endpoint no longer answers: {r.status_code} {r.text[:300]}"
    catalog = rdf.catalog_of(http).graph
    got = int(list(parse_select(r, "json"))[0][0])
    assert got == len(set(catalog.subjects(RDF.type, DCAT.Dataset)))


# name -> (query, where the error starts as (line, column), 1-based). The parser reports the
# position at which it detected the error: a PEG parser detects it at the furthest point it
# could reach, which may be past the offending token but never before it, and never outside
# the query.
SYNTAX_ERRORS = {
    "one_line": ("SELECT * WHERE { ?s ?p } LIMIT 10", (1, 24)),
    "filter_on_line_4": (
        "SELECT ?s\nWHERE {\n  ?s ?p ?o .\n  FILTER(?s = )\n  ?s ?q ?r .\n}\nLIMIT 5",
        (4, 15),
    ),
    "unknown_prefix": ("SELECT ?s WHERE {\n  ?s nope:thing ?o\n}", (2, 6)),
    "sql_not_sparql": ("SELECT * FROM lineitem", (1, 15)),
    "misspelt_keyword": ("SELEC * WHERE { ?s ?p ?o }", (1, 1)),
}


@pytest.mark.requirement("UDN-SPARQL-4")
@pytest.mark.parametrize("how", ["get", "form", "direct"])
def test_syntax_error_is_400_plain_text(main_http, how):
    _expect_error(run(main_http, "SELECT * WHERE { ?s ?p }", how), 400, f"syntax error ({how})")
    _answers(main_http)


@pytest.mark.requirement("UDN-SPARQL-4")
@pytest.mark.parametrize("case", list(SYNTAX_ERRORS))
def test_syntax_error_gives_the_position(main_http, case):
    """The message holds `line:column` of where the error was detected: at or after the
    offending token, within the query."""
    query, first = SYNTAX_ERRORS[case]
    lines = query.split("\n")
    end = (len(lines), len(lines[-1]) + 1)
    text = _expect_error(run(main_http, query, "form"), 400, case)
    positions = [(int(a), int(b)) for a, b in re.findall(r"(?<![\d.])(\d+):(\d+)(?![\d.])", text)]
    assert positions, f"{case}: no line:column in the message: {text[:300]!r}"
    assert any(first <= p <= end for p in positions), (
        f"{case}: the message gives {positions}, the error starts at {first[0]}:{first[1]} "
        f"and the query ends at {end[0]}:{end[1]}\n{query}\n{text[:300]!r}"
    )
    _answers(main_http)


def _limit(g: Graph, predicate) -> Literal | None:
    services = list(g.subjects(RDF.type, SD.Service))
    return g.value(services[0], predicate) if services else None


@pytest.mark.requirement("UDN-SPARQL-4")
def test_limits_are_stated_in_the_service_description(service_description):
    """Query length, run time and result size limits, stated where clients look for the
    endpoint's properties (udn:maxQueryBytes, udn:queryTimeout, udn:maxResults)."""
    g = service_description
    for predicate in (UDN.maxQueryBytes, UDN.maxResults, UDN.queryTimeout):
        value = _limit(g, predicate)
        assert value is not None, f"the service description does not state {predicate}"
    assert int(_limit(g, UDN.maxQueryBytes)) > 0 and int(_limit(g, UDN.maxResults)) > 0


def _padded(query: str, length: int) -> str:
    """`query` and a comment line: exactly `length` bytes of UTF-8."""
    filler = length - len(query.encode()) - 2
    assert filler >= 0
    return f"{query}\n#{'x' * filler}"


@pytest.mark.requirement("UDN-SPARQL-4")
@pytest.mark.parametrize("how", ["form", "direct"])
def test_query_length_limit(main_http, service_description, how):
    """A query of exactly the stated length is answered; one byte more is 413."""
    stated = _limit(service_description, UDN.maxQueryBytes)
    if stated is None:
        pytest.fail("no udn:maxQueryBytes in the service description", pytrace=False)
    query = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    at_limit = _padded(query, int(stated))
    assert len(at_limit.encode()) == int(stated)
    r = run(main_http, at_limit, how)
    assert r.status_code == 200, (
        f"a query of exactly {stated} bytes: HTTP {r.status_code} {r.text[:300]}"
    )
    text = _expect_error(run(main_http, _padded(query, int(stated) + 1), how), 413, "too long")
    assert len(text) < 10_000, "the error echoes the query back"
    _answers(main_http)


@pytest.mark.requirement("UDN-SPARQL-4")
def test_result_limit_refuses_rather_than_cuts(main_http, service_description):
    """A SELECT with exactly the stated number of solutions is answered in full; one more is
    400 naming LIMIT (never a cut result)."""
    stated = _limit(service_description, UDN.maxResults)
    if stated is None:
        pytest.fail("no udn:maxResults in the service description", pytrace=False)
    most = int(stated)
    pairs = "SELECT ?a ?b WHERE {{ ?a ?p ?x . ?b ?q ?y }} LIMIT {}"
    r = run(main_http, pairs.format(most), "form")
    assert r.status_code == 200, f"{most} solutions: HTTP {r.status_code}: {r.text[:300]}"
    assert len(r.json()["results"]["bindings"]) == most
    text = _expect_error(run(main_http, pairs.format(most + 1), "form"), 400, "too many results")
    assert "LIMIT" in text, f"the message does not mention LIMIT: {text[:300]!r}"
    _answers(main_http)


OTHER_GRAPH = "urn:udn:test:graph"
DATASET_PARAMETERS = {
    "default_graph_get": ("get", {"default-graph-uri": OTHER_GRAPH}),
    "named_graph_get": ("get", {"named-graph-uri": OTHER_GRAPH}),
    "default_graph_form": ("form", {"default-graph-uri": OTHER_GRAPH}),
    "named_graph_form": ("form", {"named-graph-uri": OTHER_GRAPH}),
    "default_graph_direct": ("direct", {"default-graph-uri": OTHER_GRAPH}),
    "named_graph_direct": ("direct", {"named-graph-uri": OTHER_GRAPH}),
}


@pytest.mark.requirement("UDN-SPARQL-4")
@pytest.mark.parametrize("case", list(DATASET_PARAMETERS))
def test_other_graphs_are_400_naming_them(main_http, case):
    """A graph the endpoint does not hold, in a dataset parameter: 400 naming it."""
    how, params = DATASET_PARAMETERS[case]
    query = "SELECT * WHERE { ?s ?p ?o } LIMIT 1"
    text = _expect_error(run(main_http, query, how, **params), 400, case)
    assert OTHER_GRAPH in text, f"{case}: the message does not name the graph: {text[:300]!r}"
    _answers(main_http)


@pytest.mark.requirement("UDN-SPARQL-4")
@pytest.mark.parametrize("clause", ["FROM", "FROM NAMED"])
def test_other_graphs_in_the_query_are_400_naming_them(main_http, clause):
    query = f"SELECT * {clause} <{OTHER_GRAPH}> WHERE {{ ?s ?p ?o }} LIMIT 1"
    text = _expect_error(run(main_http, query, "form"), 400, clause)
    assert OTHER_GRAPH in text, f"{clause}: the message does not name the graph: {text[:300]!r}"


COUNT_ALL = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
COUNT_NAMED = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"


def _count(r: requests.Response) -> int:
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}"
    return int(list(parse_select(r, "json"))[0][0])


@pytest.mark.requirement("UDN-SPARQL-1")
@pytest.mark.parametrize("how", ["get", "form", "direct"])
def test_dataset_parameters_naming_the_catalog_graph(main_http, main_catalog, how):
    """The catalog's graph is named by the catalog's IRI: `default-graph-uri` naming it gives
    the catalog as the default graph, `named-graph-uri` as a named graph (and an empty default
    graph, as the SPARQL 1.1 Protocol defines when only named graphs are given)."""
    graph = str(main_catalog.iri)
    triples = len(main_catalog.graph)
    assert _count(run(main_http, COUNT_ALL, how, **{"default-graph-uri": graph})) == triples
    assert _count(run(main_http, COUNT_NAMED, how, **{"named-graph-uri": graph})) == triples
    assert _count(run(main_http, COUNT_ALL, how, **{"named-graph-uri": graph})) == 0
    both = {"default-graph-uri": graph, "named-graph-uri": graph}
    assert _count(run(main_http, COUNT_ALL, how, **both)) == triples
    # Without parameters the catalog is the default graph, and there is no named graph.
    assert _count(run(main_http, COUNT_NAMED, how)) == 0


@pytest.mark.requirement("UDN-SPARQL-1")
def test_from_and_from_named_the_catalog_graph(main_http, main_catalog):
    graph = main_catalog.iri
    triples = len(main_catalog.graph)
    from_graph = f"SELECT (COUNT(*) AS ?n) FROM <{graph}> WHERE {{ ?s ?p ?o }}"
    assert _count(run(main_http, from_graph, "form")) == triples
    from_named = f"SELECT (COUNT(*) AS ?n) FROM NAMED <{graph}> WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}"
    assert _count(run(main_http, from_named, "form")) == triples


@pytest.mark.requirement("UDN-SPARQL-4")
def test_service_is_400(main_http):
    """The endpoint does not federate: SERVICE is refused."""
    query = "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }"
    _expect_error(run(main_http, query, "form"), 400, "SERVICE")
    _answers(main_http)


@pytest.mark.requirement("UDN-SPARQL-4")
def test_service_silent_is_the_empty_solution(main_http):
    """SERVICE SILENT of a service the endpoint does not call evaluates, as SPARQL 1.1
    Federated Query defines for a failed service, to one empty solution: the rest of the
    query is answered as if the SERVICE block were absent."""
    query = (
        "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o "
        "SERVICE SILENT <http://127.0.0.1:9/sparql> { ?s ?q ?r } }"
    )
    r = run(main_http, query, "form")
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    got = int(list(parse_select(r, "json"))[0][0])
    assert got == len(rdf.catalog_of(main_http).graph)
    _answers(main_http)


UNSATISFIABLE = {
    "select_as_turtle": ("SELECT * WHERE { ?s ?p ?o } LIMIT 1", "text/turtle"),
    "select_as_png": ("SELECT * WHERE { ?s ?p ?o } LIMIT 1", "image/png"),
    "ask_as_ntriples": ("ASK { ?s ?p ?o }", "application/n-triples"),
    "construct_as_json_results": (
        "CONSTRUCT WHERE { ?s ?p ?o } LIMIT 1", "application/sparql-results+json"
    ),
    "construct_as_csv": ("CONSTRUCT WHERE { ?s ?p ?o } LIMIT 1", "text/csv"),
}  # fmt: skip


@pytest.mark.requirement("UDN-SPARQL-4")
@pytest.mark.parametrize("case", list(UNSATISFIABLE))
def test_unsatisfiable_accept_is_406(main_http, case):
    query, accept = UNSATISFIABLE[case]
    _expect_error(run(main_http, query, "get", accept=accept), 406, case)
    _answers(main_http)


# Queries of 2 to 30 KB that nest thousands of levels deep: in brackets, or in chains that a
# parser folds into equally deep trees. A recursive parser or evaluator given one of these
# without a depth limit runs out of stack, which takes the whole process down.
DEEP = {
    "braces": "ASK " + "{" * 1000 + "}" * 1000,
    "parentheses": "ASK { FILTER(" + "(" * 1000 + "1" + ")" * 1000 + ") }",
    "blank_node_lists": "ASK { ?s ?p " + "[ <urn:udn:test:p> " * 1000 + "]" * 1000 + " }",
    "or_chain": "ASK { FILTER(true" + " || true" * 3000 + ") }",
    "not_chain": "ASK { FILTER(" + "!" * 5000 + "true) }",
}


@pytest.mark.requirement("UDN-SPARQL-4")
@pytest.mark.parametrize("how", ["get", "form"])
@pytest.mark.parametrize("case", list(DEEP))
def test_deep_nesting_is_400_naming_the_limit(main_http, case, how):
    """Each deep query gets 400 with a message naming the depth limit; the node stays up."""
    text = _expect_error(run(main_http, DEEP[case], how), 400, case)
    assert "limit" in text and re.search(r"\d", text), (
        f"{case}: the message names no limit: {text[:300]!r}"
    )
    assert len(text) < 10_000, "the error echoes the query back"
    r = requests.get(f"{main_http}/healthz", timeout=TIMEOUT_S)
    assert r.status_code == 200, f"/healthz after {case}: {r.status_code}"
    _answers(main_http)


@pytest.mark.requirement("UDN-SPARQL-4")
def test_very_long_get_is_refused_by_its_length(main_http):
    """A GET whose URL is too long is refused: 413 with a plain-text message from the endpoint,
    or 414 from the HTTP server, whose body may be empty (send long queries by POST)."""
    query = _padded("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", 80_000)
    r = requests.get(_sparql(main_http), params={"query": query}, timeout=TIMEOUT_S)
    assert r.status_code in (413, 414), f"HTTP {r.status_code}: {r.text[:300]}"
    if r.status_code == 413:
        assert r.text.strip(), "HTTP 413 with an empty body"
    _answers(main_http)


# A node with small SPARQL limits (Polder configuration): time, result size, length, slots.

SMALL = {
    "sparql_max_query_bytes": 2048,
    "sparql_max_results": 50,
    "sparql_timeout_s": 2,
    "sparql_max_concurrent": 1,
    "queue_timeout_ms": 300,
    "sparql_max_depth": 16,
    "sparql_max_result_bytes": 100_000,
}
# A five-way cross product of the catalog's triples: ~10^10 combinations, never done in 2 s.
HEAVY = (
    "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }"
)


def _small_node(launcher, main_tables, directory: Path):
    """A node serving nation with the SMALL SPARQL limits."""
    from udn_conformance.node import with_catalog

    config = directory / "node.toml"
    config.write_text(
        with_catalog(
            "[limits]\n"
            f"sparql_max_query_bytes = {SMALL['sparql_max_query_bytes']}\n"
            f"sparql_max_results = {SMALL['sparql_max_results']}\n"
            f'sparql_timeout = "{SMALL["sparql_timeout_s"]}s"\n'
            f"sparql_max_concurrent = {SMALL['sparql_max_concurrent']}\n"
            f'queue_timeout = "{SMALL["queue_timeout_ms"]}ms"\n'
            f"sparql_max_depth = {SMALL['sparql_max_depth']}\n"
            f"sparql_max_result_bytes = {SMALL['sparql_max_result_bytes']}\n"
        )
    )
    return launcher.spawn(
        ["--config", str(config), "--table", f"nation={main_tables['nation']}"],
        name="sparql_limits",
    )


@pytest.fixture(scope="module")
def small_node(launcher, main_tables, tmp_path_factory):
    """Shared by the tests that run no query past the time limit."""
    node = _small_node(launcher, main_tables, tmp_path_factory.mktemp("sparql-limits"))
    yield node
    node.stop()


@pytest.fixture
def fresh_small_node(launcher, main_tables, tmp_path):
    """A node of its own for a test that runs HEAVY; killed afterwards, whatever it still runs."""
    node = _small_node(launcher, main_tables, tmp_path)
    yield node
    node.process.kill()
    node.process.wait()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SPARQL-4")
def test_configured_limits_are_stated(small_node):
    g = rdf.parse(requests.get(_sparql(small_node.http_url), timeout=TIMEOUT_S), "GET /sparql")
    assert int(_limit(g, UDN.maxQueryBytes)) == SMALL["sparql_max_query_bytes"]
    assert int(_limit(g, UDN.maxResults)) == SMALL["sparql_max_results"]
    timeout = _limit(g, UDN.queryTimeout)
    assert timeout is not None and timeout.toPython().total_seconds() == SMALL["sparql_timeout_s"]


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SPARQL-4")
def test_configured_length_and_result_limits(small_node):
    http = small_node.http_url
    most = SMALL["sparql_max_query_bytes"]
    query = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    assert run(http, _padded(query, most), "direct").status_code == 200
    _expect_error(run(http, _padded(query, most + 1), "direct"), 413, "too long")
    triples = int(list(parse_select(run(http, query), "json"))[0][0])
    assert triples > SMALL["sparql_max_results"], "the catalog is too small for this test"
    text = _expect_error(run(http, "SELECT * WHERE { ?s ?p ?o }"), 400, "too many solutions")
    assert "LIMIT" in text, text
    _expect_error(
        run(http, "CONSTRUCT WHERE { ?s ?p ?o }", "form"), 400, "too many triples"
    )
    r = run(http, f"SELECT * WHERE {{ ?s ?p ?o }} LIMIT {SMALL['sparql_max_results']}")
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["results"]["bindings"]) == SMALL["sparql_max_results"]
    _answers(http)


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SPARQL-4", "UDN-SPARQL-1")
def test_query_past_the_time_limit_is_stopped_with_503(fresh_small_node):
    """503 at the time limit, and the query is stopped: within a few seconds its slot (the only
    one) is free again and the node no longer spends CPU on it."""
    node = fresh_small_node
    http = node.http_url
    started = time.monotonic()
    r = run(http, HEAVY, "form")
    seconds = time.monotonic() - started
    _expect_error(r, 503, "time limit")
    limit = SMALL["sparql_timeout_s"]
    assert limit * 0.9 <= seconds < limit + 5, f"503 after {seconds:.1f}s with a {limit}s limit"
    time.sleep(1)
    before = _cpu_seconds(node.process.pid)
    time.sleep(2)
    burnt = _cpu_seconds(node.process.pid) - before
    deadline, statuses = time.monotonic() + 5, []
    while time.monotonic() < deadline:
        statuses.append(run(http, "ASK { ?s ?p ?o }", "get").status_code)
        if statuses[-1] == 200:
            break
        time.sleep(0.2)
    assert burnt < 0.5 and statuses[-1] == 200, (
        f"the query was answered 503 but not stopped: {burnt:.1f}s of CPU in 2 s, 3 s after the "
        f"503; a normal query then got {sorted(set(statuses))} for 5 s"
        + (" (429: the abandoned query still holds the only slot)" if 429 in statuses else "")
    )
    _answers(http)


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SPARQL-4")
def test_every_slot_taken_is_429_with_retry_after(fresh_small_node):
    """One slot: while HEAVY holds it (up to the 2 s time limit), another query waits the queue
    limit (300 ms) and gets 429 with Retry-After."""
    http = fresh_small_node.http_url
    heavy: list[requests.Response] = []
    thread = threading.Thread(target=lambda: heavy.append(run(http, HEAVY, "form")))
    thread.start()
    try:
        time.sleep(0.4)
        started = time.monotonic()
        r = run(http, "ASK { ?s ?p ?o }", "get")
        seconds = time.monotonic() - started
        _expect_error(r, 429, "every slot taken")
        retry = r.headers.get("Retry-After")
        assert retry is not None and retry.strip().isdigit(), f"Retry-After: {retry!r}"
        assert seconds < SMALL["queue_timeout_ms"] / 1000 + 1.5, f"429 after {seconds:.1f}s"
    finally:
        thread.join(timeout=30)
    assert heavy and heavy[0].status_code == 503, heavy and heavy[0].status_code


def _wide(copies: int) -> str:
    """One solution whose value is `copies` times 10 KiB (640 `f` per 10 KiB), from a short,
    shallow query."""
    block = "0123456789abcdef" * 32
    return (
        f"SELECT (CONCAT({', '.join(['?b'] * copies)}) AS ?c) WHERE {{ "
        f'BIND("{block}" AS ?a) BIND(CONCAT({", ".join(["?a"] * 20)}) AS ?b) }}'
    )


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SPARQL-4")
def test_configured_depth_and_result_byte_limits(small_node):
    """Nesting at the configured depth is answered, one level more is 400 naming the limit; a
    result within the configured byte limit arrives whole, a larger one is 400 naming it."""
    http = small_node.http_url
    depth = SMALL["sparql_max_depth"]

    def nested(n: int) -> str:
        return "ASK " + "{" * n + " ?s ?p ?o " + "}" * n

    r = run(http, nested(depth), "form")
    assert r.status_code == 200, f"{depth} levels: HTTP {r.status_code}: {r.text[:300]}"
    text = _expect_error(run(http, nested(depth + 1), "form"), 400, "too deep")
    assert str(depth) in text, f"the message does not name the limit {depth}: {text[:300]!r}"

    most = SMALL["sparql_max_result_bytes"]
    r = run(http, _wide(5), "form", accept="text/csv")
    assert r.status_code == 200, f"51 KB result: HTTP {r.status_code}: {r.text[:300]}"
    assert r.text.count("f") == 5 * 640, "the result is cut"
    text = _expect_error(run(http, _wide(20), "form", accept="text/csv"), 400, "result too large")
    assert str(most) in text, f"the message does not name the limit {most}: {text[:300]!r}"
    _answers(http)
