//! The register in the catalog: each sensor a `sosa:Sensor` with its observed properties
//! (`sosa:observes`), its position (`geo:hasGeometry` / `geo:asWKT`, GeoSPARQL), its owner
//! (`dct:rightsHolder`), contact point (`dcat:contactPoint`) and the dataset it feeds, and the
//! UDN terms for what the communicatierichtlijn asks and SOSA has no word for
//! (`udn:purpose`, `udn:legalBasis`, `udn:processesPersonalData`, `udn:retention`,
//! `udn:neighbourhood`). `ontology/udn-shapes.ttl` (`udnsh:SensorShape`) checks them.

use oxigraph::model::{BlankNode, Literal, NamedNode, NamedOrBlankNode, Term, Triple};

use super::{Register, Sensor, Text};
use crate::iris::Iris;
use crate::terms::{iri, text};
use crate::vocab::{DCAT, DCT, FOAF, GEO, RDF, RDFS, SOSA, UDN, VCARD, XSD};

/// The triples describing every sensor of `register` (unsorted).
pub fn describe(iris: &Iris, register: &Register) -> Vec<Triple> {
    let mut triples = Vec::new();
    for sensor in &register.sensors {
        describe_sensor(&mut triples, iris, sensor);
    }
    triples
}

/// Blank node labels are `geometry-<id>`, `owner-<id>` and `contact-sensor-<id>`: ids hold
/// only letters, digits, `-` and `_`, all valid in labels.
fn describe_sensor(out: &mut Vec<Triple>, iris: &Iris, sensor: &Sensor) {
    let s: NamedOrBlankNode = NamedNode::new_unchecked(iris.sensor(&sensor.id)).into();
    let mut add = |s: &NamedOrBlankNode, p: NamedNode, o: Term| {
        out.push(Triple::new(s.clone(), p, o));
    };
    add(&s, iri(RDF, "type"), iri(SOSA, "Sensor").into());
    add(&s, iri(DCT, "identifier"), text(&sensor.id));
    for value in variants(&sensor.name) {
        add(&s, iri(RDFS, "label"), value);
    }
    if let Some(kind) = &sensor.kind {
        for value in variants(kind) {
            add(&s, iri(DCT, "type"), value);
        }
    }
    for property in &sensor.observes {
        let p: NamedOrBlankNode =
            NamedNode::new_unchecked(iris.observable_property(property)).into();
        add(&p, iri(RDF, "type"), iri(SOSA, "ObservableProperty").into());
        add(&p, iri(RDFS, "label"), text(property));
        add(&s, iri(SOSA, "observes"), p.into());
    }
    let geometry: NamedOrBlankNode =
        BlankNode::new_unchecked(format!("geometry-{}", sensor.id)).into();
    add(&geometry, iri(RDF, "type"), iri(GEO, "Geometry").into());
    add(
        &geometry,
        iri(GEO, "asWKT"),
        Literal::new_typed_literal(
            format!("POINT({} {})", sensor.longitude, sensor.latitude),
            iri(GEO, "wktLiteral"),
        )
        .into(),
    );
    add(&s, iri(GEO, "hasGeometry"), geometry.into());
    let owner: NamedOrBlankNode = BlankNode::new_unchecked(format!("owner-{}", sensor.id)).into();
    add(&owner, iri(RDF, "type"), iri(FOAF, "Agent").into());
    add(&owner, iri(FOAF, "name"), text(&sensor.owner));
    add(&s, iri(DCT, "rightsHolder"), owner.into());
    let contact: NamedOrBlankNode =
        BlankNode::new_unchecked(format!("contact-sensor-{}", sensor.id)).into();
    add(&contact, iri(RDF, "type"), iri(VCARD, "Kind").into());
    add(&contact, iri(VCARD, "fn"), text(&sensor.contact.name));
    if let Some(email) = &sensor.contact.email {
        add(
            &contact,
            iri(VCARD, "hasEmail"),
            NamedNode::new_unchecked(format!("mailto:{email}")).into(),
        );
    }
    if let Some(url) = &sensor.contact.url {
        add(
            &contact,
            iri(VCARD, "hasURL"),
            NamedNode::new_unchecked(url).into(),
        );
    }
    add(&s, iri(DCAT, "contactPoint"), contact.into());
    for value in variants(&sensor.purpose) {
        add(&s, iri(UDN, "purpose"), value);
    }
    for value in variants(&sensor.legal_basis) {
        add(&s, iri(UDN, "legalBasis"), value);
    }
    add(
        &s,
        iri(UDN, "processesPersonalData"),
        Literal::new_typed_literal(sensor.personal_data.to_string(), iri(XSD, "boolean")).into(),
    );
    if let Some(retention) = &sensor.retention {
        for value in variants(retention) {
            add(&s, iri(UDN, "retention"), value);
        }
    }
    if let Some(neighbourhood) = &sensor.neighbourhood {
        add(&s, iri(UDN, "neighbourhood"), text(neighbourhood));
    }
    if let Some(dataset) = &sensor.dataset {
        add(
            &s,
            iri(UDN, "feeds"),
            NamedNode::new_unchecked(iris.dataset(dataset)).into(),
        );
    }
}

/// Each language's text as a literal, language-tagged where the language is stated.
fn variants(value: &Text) -> Vec<Term> {
    value
        .variants()
        .into_iter()
        .map(|(language, value)| match language {
            Some(l) => Literal::new_language_tagged_literal_unchecked(value, l).into(),
            None => Literal::new_simple_literal(value).into(),
        })
        .collect()
}
