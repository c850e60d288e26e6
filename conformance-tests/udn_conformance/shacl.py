"""Validating a node's catalog against the official DCAT-AP 3.0.1 and DCAT-AP-NL 3.0 SHACL shapes.

The shapes are committed unchanged in `ontology/standards/` (see its README for sources and
licences). DCAT-AP-NL's own rule is that a catalog conforms when it has no violation against the
DCAT-AP shapes and the NL shapes together; results of severity `sh:Violation` are failures, those
of severity `sh:Warning` (mostly recommended properties) are reported, not hidden.

Each shapes file is validated on its own: the files reuse shape IRIs (DCAT-AP-NL's
`DatasetShape` is defined in three files, DCAT-AP's `:Catalog_Shape` in two), so loading them
into one graph would merge shapes the authors kept apart and lose which file a result came from.
`mdr-vocabularies.shape.ttl` checks values against the EU vocabularies, which must be loaded
into the data graph for it to mean anything; it is informative only and not used here.

The UDN profile's own shapes (`ontology/udn-shapes.ttl`: the terms DCAT lacks, such as
`udn:sqlTable` and the column descriptions) are validated the same way when the file exists.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyshacl
from rdflib import RDF, Graph, Literal, Namespace, URIRef
from rdflib.namespace import SH
from rdflib.term import BNode, Node

from . import paths

ONTOLOGY = paths.ONTOLOGY
STANDARDS = ONTOLOGY / "standards"
UDN_SHAPES = ONTOLOGY / "udn-shapes.ttl"
DCAT_AP = "dcat-ap-3.0.1"
DCAT_AP_NL = "dcat-ap-nl-3.0"

# (folder, file): mandatory properties, cardinalities and class ranges.
MANDATORY = [
    (DCAT_AP, "shapes.ttl"),
    (DCAT_AP, "range.ttl"),
    (DCAT_AP_NL, "dcat-ap-nl-SHACL.ttl"),
    (DCAT_AP_NL, "dcat-ap-nl-SHACL-klassebereik.ttl"),
    (DCAT_AP_NL, "dcat-ap-nl-SHACL-klassebereik-codelijsten.ttl"),
]
# Recommended properties: every result is a warning.
RECOMMENDED = [
    (DCAT_AP, "shapes_recommended.ttl"),
    (DCAT_AP_NL, "dcat-ap-nl-SHACL-aanbevolen.ttl"),
]
# Needs the EU controlled vocabularies in the data graph; informative, not validated.
INFORMATIVE = [(DCAT_AP, "mdr-vocabularies.shape.ttl")]
ALL_FILES = MANDATORY + RECOMMENDED + INFORMATIVE

EUSH = Namespace("https://purl.eu/ns/shacl#")
PREFIXES = {
    "http://www.w3.org/ns/dcat#": "dcat:",
    "http://purl.org/dc/terms/": "dct:",
    "http://www.w3.org/ns/csvw#": "csvw:",
    "https://w3id.org/udn/ns#": "udn:",
    "http://xmlns.com/foaf/0.1/": "foaf:",
    "http://www.w3.org/2006/vcard/ns#": "vcard:",
    "http://www.w3.org/2004/02/skos/core#": "skos:",
    "http://www.w3.org/ns/adms#": "adms:",
    "http://data.europa.eu/r5r/": "dcatap:",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#": "rdf:",
    "http://www.w3.org/2000/01/rdf-schema#": "rdfs:",
    "http://www.w3.org/ns/locn#": "locn:",
    "http://www.w3.org/ns/prov#": "prov:",
    "http://www.w3.org/ns/odrl/2/": "odrl:",
    "http://spdx.org/rdf/terms#": "spdx:",
    "http://www.w3.org/ns/shacl#": "sh:",
}


def short(term: Node | None, graph: Graph | None = None) -> str:
    """A readable name for an IRI (prefixed where known), path or literal."""
    if term is None:
        return "-"
    if isinstance(term, URIRef):
        for ns, prefix in PREFIXES.items():
            if str(term).startswith(ns):
                return prefix + str(term)[len(ns) :]
        return f"<{term}>"
    if isinstance(term, BNode) and graph is not None:
        inverse = graph.value(term, SH.inversePath)
        if inverse is not None:
            return f"^{short(inverse)}"
        return "[blank node]"
    if isinstance(term, Literal):
        return repr(str(term))
    return str(term)


@dataclass(frozen=True)
class Result:
    """One SHACL validation result, in words."""

    file: str
    severity: str  # "Violation", "Warning" or "Info"
    focus: str
    focus_classes: tuple[str, ...]
    path: str
    message: str  # the shape's own message, or what the constraint asks (same for every focus)
    detail: str  # the engine's message for this focus node
    shape: str
    value: str

    def line(self) -> str:
        classes = ",".join(self.focus_classes) or "untyped"
        value = f" value={self.value}" if self.value != "-" else ""
        return (
            f"{self.severity}: {self.file}: focus {self.focus} ({classes}) path {self.path}: "
            f"{self.message}{value} [shape {self.shape}]"
            + (f" ({self.detail})" if self.detail and self.detail != self.message else "")
        )


@dataclass
class Report:
    """All results of validating one catalog against every used shapes file."""

    label: str
    triples: int
    results: list[Result] = field(default_factory=list)

    @property
    def violations(self) -> list[Result]:
        return [r for r in self.results if r.severity == "Violation"]

    @property
    def warnings(self) -> list[Result]:
        return [r for r in self.results if r.severity != "Violation"]

    def violation_text(self, most: int = 60) -> str:
        lines = [r.line() for r in self.violations]
        more = f"\n... and {len(lines) - most} more" if len(lines) > most else ""
        return "\n".join(lines[:most]) + more

    def warning_summary(self) -> list[tuple[str, str, str, str, int]]:
        """(file, focus class, path, message, how many focus nodes), most frequent first."""
        counts = Counter(
            (r.file, ",".join(r.focus_classes) or "untyped", r.path, r.message)
            for r in self.warnings
        )
        return [(*key, n) for key, n in counts.most_common()]

    def summary_lines(self) -> list[str]:
        lines = [
            f"{self.label}: {self.triples} triples, {len(self.violations)} violation(s), "
            f"{len(self.warnings)} warning(s)"
        ]
        for file, cls, path, message, n in self.warning_summary():
            lines.append(f"    warning x{n}: {cls} {path}: {message} ({file})")
        for r in self.violations:
            lines.append(f"    {r.line()}")
        return lines


@functools.cache
def shapes_graph(path: Path) -> Graph:
    g = Graph()
    g.parse(path, format="turtle")
    return g


def shape_files(udn: bool = True) -> list[tuple[str, Path]]:
    """(name in reports, path) of every shapes file validated against: mandatory, recommended,
    and the UDN shapes when present (and `udn`)."""
    files = [(f"{folder}/{name}", STANDARDS / folder / name) for folder, name in MANDATORY]
    files += [(f"{folder}/{name}", STANDARDS / folder / name) for folder, name in RECOMMENDED]
    if udn and UDN_SHAPES.is_file():
        files.append((UDN_SHAPES.name, UDN_SHAPES))
    return files


# Constraint component -> the parameter whose value says what it asks.
_PARAMETERS = {
    "MinCount": SH.minCount,
    "MaxCount": SH.maxCount,
    "Class": SH["class"],
    "Datatype": SH.datatype,
    "NodeKind": SH.nodeKind,
    "Node": SH.node,
    "In": SH["in"],
    "Pattern": SH.pattern,
    "MinLength": SH.minLength,
    "MaxLength": SH.maxLength,
    "HasValue": SH.hasValue,
}


def _message(result: Node, results: Graph, shapes: Graph) -> str:
    """What the shape asks, the same for every focus node: its eush:message or sh:message
    (DCAT-AP-NL writes its messages as eush:message, which SHACL engines do not copy into
    results), else the constraint and its parameter (`sh:minCount 1`)."""
    shape = results.value(result, SH.sourceShape)
    if shape is not None:
        for predicate in (EUSH.message, SH.message):
            message = shapes.value(shape, predicate)
            if message is not None:
                return str(message)
    component = results.value(result, SH.sourceConstraintComponent)
    name = str(component).rsplit("#", 1)[-1].removesuffix("ConstraintComponent")
    parameter = _PARAMETERS.get(name)
    value = shapes.value(shape, parameter) if shape is not None and parameter else None
    if value is not None:
        return f"{short(parameter)} {short(value) if not isinstance(value, Literal) else value}"
    return f"sh:{name}" if component is not None else str(results.value(result, SH.resultMessage))


def _shape_name(shape: Node | None, shapes: Graph) -> str:
    if shape is None:
        return "-"
    if isinstance(shape, BNode):
        path = shapes.value(shape, SH.path)
        return f"[property shape on {short(path, shapes)}]"
    return short(shape)


def validate_file(data: Graph, label: str, path: Path) -> list[Result]:
    shapes = shapes_graph(path)
    _conforms, results, _text = pyshacl.validate(
        data,
        shacl_graph=shapes,
        inference="none",
        advanced=True,
        allow_warnings=True,
        allow_infos=True,
        abort_on_first=False,
    )
    out: list[Result] = []
    for result in results.subjects(RDF.type, SH.ValidationResult):
        focus = results.value(result, SH.focusNode)
        path = results.value(result, SH.resultPath)
        severity = results.value(result, SH.resultSeverity)
        shape = results.value(result, SH.sourceShape)
        classes = tuple(sorted(short(c) for c in data.objects(focus, RDF.type)))
        out.append(
            Result(
                file=label,
                severity=str(severity).rsplit("#", 1)[-1] if severity else "Violation",
                focus=short(focus) if not isinstance(focus, BNode) else f"_:{focus}",
                focus_classes=classes,
                path=short(path, results),
                message=_message(result, results, shapes),
                detail=str(results.value(result, SH.resultMessage) or ""),
                shape=_shape_name(shape, shapes),
                value=short(results.value(result, SH.value)),
            )
        )
    return sorted(out, key=lambda r: (r.severity, r.file, r.focus, r.path, r.message))


def validate(data: Graph, label: str = "catalog", udn: bool = True) -> Report:
    """Validate against the mandatory and the recommended shapes of DCAT-AP 3.0.1 and
    DCAT-AP-NL 3.0 (and the UDN shapes). Violations are in `report.violations`, warnings in
    `report.warnings`."""
    report = Report(label=label, triples=len(data))
    for name, path in shape_files(udn):
        report.results.extend(validate_file(data, name, path))
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m udn_conformance.shacl SOURCE`: validate a catalog (a Turtle file or a node's
    `/catalog` URL) and print the summary; exit status 1 on any violation."""
    import argparse

    import requests

    parser = argparse.ArgumentParser(prog="python -m udn_conformance.shacl", description=main.__doc__)
    parser.add_argument("source", help="Turtle file, or http(s) URL of a node's /catalog")
    args = parser.parse_args(argv)
    graph = Graph()
    if args.source.startswith(("http://", "https://")):
        response = requests.get(args.source, headers={"Accept": "text/turtle"}, timeout=60)
        response.raise_for_status()
        graph.parse(data=response.text, format="turtle")
    else:
        graph.parse(args.source, format="turtle")
    report = validate(graph, label=args.source)
    print("\n".join(report.summary_lines()))
    return 1 if report.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
