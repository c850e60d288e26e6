//! RDF terms as the catalog writes them (typed literals of counts, sizes and times) and the
//! canonical order of its triples.

use chrono::{DateTime, NaiveDate};
use oxigraph::model::{Literal, NamedNode, Term, Triple};

use crate::vocab::{RDF, XSD};

/// The IRI `ns` + `local` of a vocabulary term.
pub(crate) fn iri(ns: &str, local: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("{ns}{local}"))
}

/// An XSD datatype.
pub(crate) fn xsd(local: &str) -> NamedNode {
    iri(XSD, local)
}

/// A plain string literal.
pub(crate) fn text(value: &str) -> Term {
    Literal::new_simple_literal(value).into()
}

/// A count or position: `xsd:integer`, so that SPARQL aggregates (which compute in
/// `xsd:integer`) give terms equal to the stored ones.
pub(crate) fn integer(value: u64) -> Term {
    Literal::new_typed_literal(value.to_string(), xsd("integer")).into()
}

/// A byte size: DCAT-AP requires `xsd:nonNegativeInteger`.
pub(crate) fn byte_size(value: u64) -> Term {
    Literal::new_typed_literal(value.to_string(), xsd("nonNegativeInteger")).into()
}

/// The typed literal of a date (`YYYY-MM-DD`, xsd:date) or time (RFC 3339 or
/// `YYYY-MM-DDTHH:MM:SS[.f]`, xsd:dateTime), or None if it is neither.
pub fn temporal_literal(value: &str) -> Option<Literal> {
    let value = value.trim();
    if NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() {
        return Some(Literal::new_typed_literal(value, xsd("date")));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Some(Literal::new_typed_literal(
            time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            xsd("dateTime"),
        ));
    }
    let naive = value.replace(' ', "T");
    if chrono::NaiveDateTime::parse_from_str(&naive, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
        return Some(Literal::new_typed_literal(naive, xsd("dateTime")));
    }
    None
}

/// Sorts triples into the catalog's canonical order: by subject, each subject's `rdf:type`
/// first, then by predicate and object (all compared in their N-Triples form); duplicates
/// are removed.
pub fn sort_triples(triples: &mut Vec<Triple>) {
    let rdf_type = format!("{RDF}type");
    triples.sort_by_cached_key(|t| {
        (
            t.subject.to_string(),
            t.predicate.as_str() != rdf_type,
            t.predicate.as_str().to_string(),
            t.object.to_string(),
        )
    });
    triples.dedup();
}
