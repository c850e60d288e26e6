"""The conformance classes a node claims (UDN-OPS-6): `GET /conformance` and `dct:conformsTo`
of the node's Flight SQL `dcat:DataService` name the same class URIs, Core among them.

Against any node (remote mode too, with `UDN_HTTP_URL`); spawn mode also checks that Polder
claims Security only with authentication and Privacy only with the audit log as well.
"""

from __future__ import annotations

import subprocess

import pytest
import requests
from rdflib import RDF, URIRef

from udn_conformance import paths, rdf, spec
from udn_conformance.access import auth_args, idp  # noqa: F401 - fixtures are used by name
from udn_conformance.rdf import DCAT, DCT

BASE = spec.CLASS_BASE
# The classes of the spec's "Conformance classes" table, by name.
CLASSES = {name: c.uri for name, c in spec.load_classes(paths.spec_file()).items()}

OPEN_POLICY = """
[[dataset]]
name = "air_quality"
public = true
"""


def claimed(http: str) -> set[str]:
    response = requests.get(f"{http}/conformance", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body.get("conformsTo"), list), body
    return set(body["conformsTo"])


def flight_service_standards(http: str) -> set[str]:
    """`dct:conformsTo` of the catalog's data service whose endpoint is Flight SQL."""
    graph = rdf.catalog_of(http).graph
    services = [
        s
        for s in graph.subjects(RDF.type, DCAT.DataService)
        if any(str(url).startswith(("grpc://", "grpc+tls://")) for url in graph.objects(s, DCAT.endpointURL))
    ]
    assert len(services) == 1, f"expected one Flight SQL data service, found {services}"
    return {str(o) for o in graph.objects(services[0], DCT.conformsTo) if isinstance(o, URIRef)}


@pytest.mark.requirement("UDN-OPS-6")
def test_the_node_declares_its_classes_in_both_places(main_http):
    classes = claimed(main_http)
    assert CLASSES["core"] in classes, classes
    unknown = classes - set(CLASSES.values())
    assert not unknown, f"not UDN 1.0 conformance classes: {unknown}"
    standards = flight_service_standards(main_http)
    udn = {s for s in standards if s.startswith(BASE)}
    assert udn == classes, f"/conformance {sorted(classes)} but dct:conformsTo {sorted(udn)}"


@pytest.mark.requirement("UDN-OPS-6")
def test_security_and_privacy_are_claimed_only_when_configured(launcher, idp, polder_bin, tmp_path):  # noqa: F811
    plain = launcher.spawn([], name="utrecht")
    assert claimed(plain.http_url) == {
        CLASSES[c] for c in ("core", "catalog", "federation", "observability", "spatial", "sensors")
    }

    secured = launcher.spawn(auth_args(idp, OPEN_POLICY, "open"), name="utrecht")
    assert CLASSES["security"] in claimed(secured.http_url)
    assert CLASSES["privacy"] not in claimed(secured.http_url)

    keys = tmp_path / "audit-keys"
    subprocess.run(
        [str(polder_bin), "token", "keygen", "--out", str(keys), "--kid", "audit"], check=True, timeout=60
    )
    audited = launcher.spawn(
        [
            *auth_args(idp, OPEN_POLICY, "open-audited"),
            "--audit-log", str(tmp_path / "audit.jsonl"),
            "--audit-key", str(keys / "token-key.pem"),
        ],  # fmt: skip
        name="utrecht",
    )
    assert {CLASSES["security"], CLASSES["privacy"]} <= claimed(audited.http_url)
    assert flight_service_standards(audited.http_url) >= {CLASSES["security"], CLASSES["privacy"]}
