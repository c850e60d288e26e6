//! The `dcat:Catalog` itself: its metadata, publisher, theme taxonomy and the titles of the
//! standards the catalog and its services conform to.

use oxigraph::model::{Literal, NamedNode, NamedOrBlankNode};

use super::Context;
use super::graph::Graph;
use crate::terms::{iri, text};
use crate::vocab::{self, DCAT, DCT, FOAF, SKOS};

/// Describes the catalog; returns its node.
pub(super) fn describe(g: &mut Graph, cx: &Context) -> NamedOrBlankNode {
    let catalog = cx.catalog;
    let cat: NamedOrBlankNode = NamedNode::new_unchecked(cx.ids.catalog()).into();
    g.a(cat.clone(), iri(DCAT, "Catalog"));
    g.add(cat.clone(), iri(DCT, "title"), text(&catalog.title));
    g.add(
        cat.clone(),
        iri(DCT, "description"),
        text(&catalog.description),
    );
    g.add(cat.clone(), iri(DCT, "identifier"), text(&cx.ids.catalog()));
    g.agent(&cat, iri(DCT, "publisher"), &catalog.publisher);
    g.agent(&cat, iri(DCT, "creator"), &catalog.creator);
    g.contact(&cat, "catalog", &catalog.contact_point);
    g.license(&cat, &catalog.license);
    g.conforms_to(&cat, vocab::DCAT_AP_NL);
    theme_taxonomy(g, &cat);
    g.languages(&cat, &catalog.languages);
    if let Some(homepage) = &catalog.homepage {
        g.typed(&cat, iri(FOAF, "homepage"), homepage, iri(FOAF, "Document"));
    }
    g.spatial(&cat, &catalog.spatial);
    standards(g);
    cat
}

/// The EU data-theme scheme, the catalog's `dcat:themeTaxonomy`.
fn theme_taxonomy(g: &mut Graph, cat: &NamedOrBlankNode) {
    let scheme = NamedNode::new_unchecked(vocab::theme_scheme());
    g.a(scheme.clone(), iri(SKOS, "ConceptScheme"));
    g.add(
        scheme.clone(),
        iri(DCT, "title"),
        Literal::new_language_tagged_literal_unchecked("Data theme", "en"),
    );
    g.add(cat.clone(), iri(DCAT, "themeTaxonomy"), scheme);
}

/// The titles of the standards the catalog, its services and distributions conform to.
fn standards(g: &mut Graph) {
    for (standard, title) in [
        (
            vocab::FLIGHT_SQL_BINDING,
            "Urban Data Node: Arrow Flight SQL binding",
        ),
        (vocab::SPARQL_PROTOCOL, "SPARQL 1.1 Protocol"),
        (vocab::DCAT_AP_NL, "DCAT-AP-NL 3.0"),
    ] {
        g.add(
            NamedNode::new_unchecked(standard),
            iri(DCT, "title"),
            text(title),
        );
    }
}

/// The catalog's `dct:modified`: the newest modification of its datasets.
pub(super) fn modified(g: &mut Graph, cat: &NamedOrBlankNode, newest: Option<Literal>) {
    if let Some(newest) = newest {
        g.add(cat.clone(), iri(DCT, "modified"), newest);
    }
}
