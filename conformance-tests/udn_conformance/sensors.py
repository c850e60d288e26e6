"""The sensor register the suite gives a node it starts (UDN-SENS-*), and how to read a node's
register back from its catalog, its SQL table and its residents' page.

`REGISTER` is written as Polder's `[[sensors]]` configuration; for another product, its
supplier registers the same sensors (docs: conformance-tests/README.md, "Sensor register").
The entries are chosen to catch what goes wrong: texts in two languages, a sensor that
processes personal data, one without a neighbourhood, a name with HTML in it, an owner with a
non-ASCII character.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, RDF, RDFS, XSD

SOSA = Namespace("http://www.w3.org/ns/sosa/")
GEO = Namespace("http://www.opengis.net/ont/geosparql#")
DCAT = Namespace("http://www.w3.org/ns/dcat#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
UDN = Namespace("https://w3id.org/udn/ns#")

# The table one of the sensors feeds (the suite's generated `readings`).
FED_TABLE = "readings"

REGISTER: list[dict] = [
    {
        "id": "pm-oudegracht",
        "name": {"nl": "Fijnstofmeter Oudegracht", "en": "Particulate sensor Oudegracht"},
        "kind": {"nl": "Luchtkwaliteitssensor", "en": "Air quality sensor"},
        "latitude": 52.0907,
        "longitude": 5.1214,
        "neighbourhood": "Binnenstad",
        "observes": ["PM2.5", "PM10"],
        "owner": "Gemeente Utrecht",
        "purpose": {"nl": "Luchtkwaliteit in de binnenstad meten", "en": "Measuring air quality in the city centre"},
        "legal_basis": {"nl": "Wettelijke taak (Wet milieubeheer)", "en": "Legal duty (Environmental Management Act)"},
        "personal_data": False,
        "retention": {"nl": "10 jaar", "en": "10 years"},
        "contact": {"name": "Team Sensoren", "email": "sensoren@example.org"},
        "dataset": FED_TABLE,
    },
    {
        "id": "camera-vredenburg",
        "name": {"nl": "Telcamera Vredenburg", "en": "Counting camera Vredenburg"},
        "latitude": 52.0925,
        "longitude": 5.1149,
        "neighbourhood": "Binnenstad",
        "observes": ["cyclists per hour", "pedestrians per hour"],
        "owner": "Gemeente Utrecht",
        "purpose": {"nl": "Drukte op het plein tellen", "en": "Counting crowds on the square"},
        "legal_basis": {"nl": "Algemeen belang (AVG art. 6 lid 1 e)", "en": "Public interest (GDPR art. 6(1)(e))"},
        "personal_data": True,
        "retention": {"nl": "Beelden worden niet bewaard; tellingen 2 jaar", "en": "Images are not kept; counts 2 years"},
        "contact": {"url": "https://example.org/sensoren"},
    },
    {
        "id": "noise-lombok",
        "name": "Geluidsmeter <Lombok> & Co",
        "latitude": 52.0870,
        "longitude": 5.0960,
        "neighbourhood": "Lombok",
        "observes": ["sound level"],
        "owner": "Omgevingsdienst Regio Utrecht – Geluid",
        "purpose": "Geluidsbelasting volgen",
        "legal_basis": "Omgevingswet",
        "personal_data": False,
        "contact": {"email": "geluid@example.org"},
    },
    {
        "id": "water-level-1",
        "name": {"nl": "Waterstandmeter", "en": "Water level gauge"},
        "latitude": 52.1010,
        "longitude": 5.1300,
        "observes": ["water level"],
        "owner": "Hoogheemraadschap De Stichtse Rijnlanden",
        "purpose": {"nl": "Waterpeil bewaken", "en": "Monitoring the water level"},
        "legal_basis": {"nl": "Waterschapswet", "en": "Water Boards Act"},
        "personal_data": False,
        "contact": {"email": "water@example.org"},
    },
]

# Required keys of an entry (UDN-SENS-4) and how Polder names them.
REQUIRED = ["owner", "purpose", "legal_basis", "personal_data", "contact", "latitude", "observes"]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def config_toml(register: list[dict] = REGISTER) -> str:
    """The register as Polder's `[[sensors]]` configuration."""
    out = []
    for entry in register:
        out.append("[[sensors]]")
        out += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
        out.append("")
    return "\n".join(out)


def text_in(value, language: str) -> str:
    """A register text for a reader of `language` (as UDN-SENS-2 shows it)."""
    if isinstance(value, dict):
        return value.get(language) or value.get("en") or next(iter(value.values()))
    return value


@dataclass(frozen=True)
class CatalogSensor:
    """A `sosa:Sensor` of a catalog, with the values UDN-SENS-1 asks for."""

    iri: URIRef
    id: str
    labels: frozenset[Literal]
    observes: frozenset[str]
    wkt: str
    owner: str
    purposes: frozenset[Literal]
    legal_bases: frozenset[Literal]
    personal_data: bool
    contact_email: str | None
    contact_url: str | None
    retention: frozenset[Literal]
    neighbourhood: str | None
    feeds: URIRef | None


def catalog_sensors(graph: Graph) -> dict[str, CatalogSensor]:
    """Every `sosa:Sensor` of a catalog graph by its `dct:identifier`; AssertionError naming the
    sensor and the property when one is missing or repeated."""

    def one(subject, predicate, what: str):
        values = list(graph.objects(subject, predicate))
        assert len(values) == 1, f"{subject}: {len(values)} values of {what}, not one"
        return values[0]

    def optional(subject, predicate):
        values = list(graph.objects(subject, predicate))
        assert len(values) <= 1, f"{subject}: more than one {predicate}"
        return values[0] if values else None

    sensors: dict[str, CatalogSensor] = {}
    for iri in graph.subjects(RDF.type, SOSA.Sensor):
        ident = str(one(iri, DCTERMS.identifier, "dct:identifier"))
        geometry = one(iri, GEO.hasGeometry, "geo:hasGeometry")
        wkt = one(geometry, GEO.asWKT, "geo:asWKT")
        assert wkt.datatype == GEO.wktLiteral, f"{iri}: geo:asWKT is not a geo:wktLiteral"
        owner = one(iri, DCTERMS.rightsHolder, "dct:rightsHolder")
        contact = one(iri, DCAT.contactPoint, "dcat:contactPoint")
        email = optional(contact, VCARD.hasEmail)
        url = optional(contact, VCARD.hasURL)
        personal = one(iri, UDN.processesPersonalData, "udn:processesPersonalData")
        assert personal.datatype == XSD.boolean, f"{iri}: udn:processesPersonalData is not xsd:boolean"
        neighbourhood = optional(iri, UDN.neighbourhood)
        feeds = optional(iri, UDN.feeds)
        sensors[ident] = CatalogSensor(
            iri=iri,
            id=ident,
            labels=frozenset(graph.objects(iri, RDFS.label)),
            observes=frozenset(
                str(one(p, RDFS.label, "the observed property's rdfs:label"))
                for p in graph.objects(iri, SOSA.observes)
            ),
            wkt=str(wkt),
            owner=str(one(owner, FOAF.name, "the owner's foaf:name")),
            purposes=frozenset(graph.objects(iri, UDN.purpose)),
            legal_bases=frozenset(graph.objects(iri, UDN.legalBasis)),
            personal_data=bool(personal.toPython()),
            contact_email=str(email).removeprefix("mailto:") if email is not None else None,
            contact_url=str(url) if url is not None else None,
            retention=frozenset(graph.objects(iri, UDN.retention)),
            neighbourhood=str(neighbourhood) if neighbourhood is not None else None,
            feeds=feeds,
        )
    return sensors


def literals(value) -> frozenset[Literal]:
    """The literals a register text becomes: language-tagged per language, or plain."""
    if isinstance(value, dict):
        return frozenset(Literal(text, lang=lang) for lang, text in value.items())
    return frozenset([Literal(value)])


def point(wkt: str) -> tuple[float, float]:
    """Longitude and latitude of a `POINT(x y)` WKT literal (with an optional CRS IRI first)."""
    body = wkt.split(">", 1)[-1].strip()
    assert body.upper().startswith("POINT"), f"not a point: {wkt}"
    x, y = body[body.index("(") + 1 : body.index(")")].split()
    return float(x), float(y)
