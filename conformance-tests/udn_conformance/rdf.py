"""Reading a node's DCAT catalog over HTTP with rdflib, and the vocabulary the tests use.

Nothing here knows what the catalog should say: tests compute that from the data (ADBC, file
sizes) or from rdflib's own evaluation of the same Turtle.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import requests
from rdflib import BNode, Graph, URIRef


class Namespace:
    """IRIs by attribute (`DCT.title`). Unlike rdflib's `Namespace`, a str, whose `title`,
    `format`, `index` ... are str methods, every attribute here is a term; unlike its
    DefinedNamespaces, any term is allowed (and pytest's attribute probing raises no warnings)."""

    def __init__(self, base: str):
        self._base = base

    def __getattr__(self, name: str) -> URIRef:
        if name.startswith("__") or name.startswith("_mock"):
            raise AttributeError(name)
        return URIRef(self._base + name)

    def __getitem__(self, name: str) -> URIRef:
        return URIRef(self._base + name)

    def __str__(self) -> str:
        return self._base


RDF = Namespace("http://www.w3.org/1999/02/22-rdf-syntax-ns#")
XSD = Namespace("http://www.w3.org/2001/XMLSchema#")
DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCT = Namespace("http://purl.org/dc/terms/")
CSVW = Namespace("http://www.w3.org/ns/csvw#")
UDN = Namespace("https://w3id.org/udn/ns#")
SD = Namespace("http://www.w3.org/ns/sparql-service-description#")
FOAF = Namespace("http://xmlns.com/foaf/0.1/")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
QUDT = Namespace("http://qudt.org/schema/qudt/")
SKOS = Namespace("http://www.w3.org/2004/02/skos/core#")
GEO = Namespace("http://www.opengis.net/ont/geosparql#")
FORMATS_NS = Namespace("http://www.w3.org/ns/formats/")
EU_THEME = Namespace("http://publications.europa.eu/resource/authority/data-theme/")
EU_ACCESS = Namespace("http://publications.europa.eu/resource/authority/access-right/")
EU_FREQUENCY = Namespace("http://publications.europa.eu/resource/authority/frequency/")

PREFIXES = "\n".join(
    f"PREFIX {p}: <{ns}>"
    for p, ns in [
        ("rdf", RDF),
        ("xsd", XSD),
        ("dcat", DCAT),
        ("dct", DCT),
        ("csvw", CSVW),
        ("udn", UDN),
        ("foaf", FOAF),
        ("vcard", VCARD),
        ("skos", SKOS),
    ]
)

# The Arrow IPC stream media type as an IANA IRI, and the UDN Flight SQL binding.
ARROW_STREAM = URIRef(
    "https://www.iana.org/assignments/media-types/application/vnd.apache.arrow.stream"
)
FLIGHT_SQL_SPEC = URIRef("https://w3id.org/udn/spec/flight-sql")

# RDF media type -> rdflib parser name.
RDF_FORMATS = {
    "text/turtle": "turtle",
    "application/ld+json": "json-ld",
    "application/n-triples": "nt",
    "application/rdf+xml": "xml",
}

TIMEOUT_S = 30


def http_url(node) -> str:
    """The node's HTTP base, or skip (a remote node without UDN_HTTP_URL)."""
    if not node.http_url:
        pytest.skip("no HTTP address for this node (set UDN_HTTP_URL)")
    return node.http_url.rstrip("/")


def get(url: str, accept: str | None = None, **kwargs) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}) or {})
    if accept is not None:
        headers["Accept"] = accept
    return requests.get(url, headers=headers, timeout=kwargs.pop("timeout", TIMEOUT_S), **kwargs)


def media_type(response: requests.Response) -> str:
    """The response's media type without parameters, lower-case."""
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def parse(response: requests.Response, what: str = "response") -> Graph:
    """The RDF graph of a 200 response, parsed by its Content-Type."""
    assert response.status_code == 200, (
        f"{what}: HTTP {response.status_code}: {response.text[:1000]}"
    )
    kind = media_type(response)
    assert kind in RDF_FORMATS, f"{what}: Content-Type {kind!r} is not one of {list(RDF_FORMATS)}"
    return parse_text(response.content, kind, what, base=response.url)


def parse_text(data: bytes | str, kind: str, what: str = "document", base: str | None = None):
    graph = Graph()
    try:
        graph.parse(data=data, format=RDF_FORMATS[kind], publicID=base)
    except Exception as e:  # rdflib raises many types for bad input
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        raise AssertionError(f"{what} is not valid {kind}: {e}\n{text[:1500]}") from e
    return graph


def fetch_catalog(http: str, accept: str | None = None) -> tuple[requests.Response, Graph]:
    response = get(f"{http}/catalog", accept)
    return response, parse(response, f"GET /catalog (Accept: {accept})")


class Catalog:
    """A node's catalog as fetched once: the Turtle bytes, the parsed graph, its base URL."""

    def __init__(self, http: str, turtle: bytes, graph: Graph):
        self.http = http
        self.turtle = turtle
        self.graph = graph
        self.base = base_url(graph)
        self.iri = the_catalog(graph)

    def url_of(self, iri) -> str:
        """Where to GET a catalog IRI on this node: its path below the base URL, on the node's
        HTTP address (the two differ when the base URL is a public name of the node)."""
        text = str(iri)
        assert text.startswith(self.base + "/"), f"{text} is not under the base URL {self.base}"
        return self.http + text[len(self.base) :]


def catalog_of(http: str) -> Catalog:
    response, graph = fetch_catalog(http, "text/turtle")
    return Catalog(http, response.content, graph)


def the_catalog(graph: Graph) -> URIRef:
    catalogs = list(graph.subjects(RDF.type, DCAT.Catalog))
    assert len(catalogs) == 1, f"expected one dcat:Catalog, found {catalogs}"
    assert isinstance(catalogs[0], URIRef), f"the catalog is a blank node: {catalogs[0]}"
    return catalogs[0]


def base_url(graph: Graph) -> str:
    """The catalog's base URL: its dcat:Catalog is `<base>/catalog`."""
    catalog = str(the_catalog(graph))
    assert catalog.endswith("/catalog"), f"catalog IRI {catalog} does not end in /catalog"
    return catalog.removesuffix("/catalog")


def one(graph: Graph, subject, predicate, what: str = ""):
    """The single object of (subject, predicate); fails naming both when there are 0 or 2+."""
    values = list(graph.objects(subject, predicate))
    assert len(values) == 1, (
        f"{what or subject}: expected one {graph.namespace_manager.normalizeUri(predicate)}, "
        f"found {len(values)}: {values[:5]}"
    )
    return values[0]


def datasets_by_table(graph: Graph) -> dict[str, URIRef]:
    """dcat:Dataset by the table part of its udn:sqlTable ("node.public.TABLE" -> TABLE)."""
    found: dict[str, URIRef] = {}
    for dataset in graph.subjects(RDF.type, DCAT.Dataset):
        for sql in graph.objects(dataset, UDN.sqlTable):
            table = str(sql).rsplit(".", 1)[-1]
            assert table not in found, f"two datasets for table {table}: {found[table]}, {dataset}"
            found[table] = dataset
    return found


def description(graph: Graph, subject) -> Graph:
    """The triples with `subject` as subject, plus those of the blank nodes they reach."""
    out = Graph()
    todo, seen = [subject], set()
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        for p, o in graph.predicate_objects(s):
            out.add((s, p, o))
            if isinstance(o, BNode):
                todo.append(o)
    return out


def own_resources(graph: Graph) -> list[URIRef]:
    """Subjects typed with the classes the catalog defines resources of (not vocabulary terms)."""
    classes = [DCAT.Catalog, DCAT.Dataset, DCAT.Distribution, DCAT.DataService]
    classes += [CSVW.Schema, CSVW.Column]
    found = {s for c in classes for s in graph.subjects(RDF.type, c)}
    return sorted(s for s in found if isinstance(s, URIRef))


def lines(values: Iterable[object]) -> str:
    return "\n".join(f"  {v}" for v in values)
