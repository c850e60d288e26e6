//! The RDF serialisations of the catalog (Turtle, JSON-LD, N-Triples, RDF/XML) and the
//! bounded buffer results are written to.

use oxigraph::io::{RdfFormat, RdfSerializer};
use oxigraph::model::Triple;

use crate::error::SparqlError;
use crate::negotiate::Offer;
use crate::vocab::PREFIXES;

/// RDF formats the node writes, in order of preference.
pub const RDF_OFFERS: &[Offer<RdfKind>] = &[
    Offer::new("text/turtle", RdfKind::Turtle),
    Offer::new("application/ld+json", RdfKind::JsonLd),
    Offer::new("application/n-triples", RdfKind::NTriples),
    Offer::new("application/rdf+xml", RdfKind::RdfXml),
];

/// The RDF serialisations offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdfKind {
    /// Turtle (the default).
    Turtle,
    /// JSON-LD, in compact form with the catalog's prefixes as its context.
    JsonLd,
    /// N-Triples.
    NTriples,
    /// RDF/XML, which SPARQLWrapper and rdflib's SPARQLStore ask for by default.
    RdfXml,
}

impl RdfKind {
    /// Every kind, in the order of [`RDF_OFFERS`].
    pub const ALL: [Self; 4] = [Self::Turtle, Self::JsonLd, Self::NTriples, Self::RdfXml];

    /// The media type written.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Turtle => "text/turtle; charset=utf-8",
            Self::JsonLd => "application/ld+json",
            Self::NTriples => "application/n-triples",
            Self::RdfXml => "application/rdf+xml",
        }
    }
}

/// Serialises triples with the catalog's prefixes.
///
/// # Panics
/// If the triples cannot be written as RDF/XML (see [`try_serialize`]).
pub fn serialize(triples: &[Triple], kind: RdfKind) -> Vec<u8> {
    try_serialize(triples, kind).expect("writing to memory does not fail")
}

/// Serialises triples with the catalog's prefixes, or says why they cannot be written in this
/// format (406): RDF/XML cannot write a predicate without an XML local name, such as
/// `<http://example.org/1>`, nor a literal holding a character XML 1.0 forbids.
pub fn try_serialize(triples: &[Triple], kind: RdfKind) -> Result<Vec<u8>, SparqlError> {
    serialize_to(Vec::new(), triples, kind).map_err(|e| write_error(e, usize::MAX))
}

pub(crate) fn serialize_to<W: std::io::Write>(
    writer: W,
    triples: &[Triple],
    kind: RdfKind,
) -> std::io::Result<W> {
    let format = match kind {
        RdfKind::JsonLd => return crate::jsonld::write(writer, triples),
        RdfKind::RdfXml => return crate::rdfxml::write(writer, triples),
        RdfKind::Turtle => RdfFormat::Turtle,
        RdfKind::NTriples => RdfFormat::NTriples,
    };
    let mut serializer = RdfSerializer::from_format(format);
    if kind != RdfKind::NTriples {
        for (prefix, namespace) in PREFIXES {
            serializer = serializer
                .with_prefix(*prefix, *namespace)
                .expect("the prefixes are valid IRIs");
        }
    }
    let mut writer = serializer.for_writer(writer);
    for triple in triples {
        writer.serialize_triple(triple)?;
    }
    writer.finish()
}

/// Memory that refuses to grow past `max` bytes: results are refused while they are
/// serialised, not once they are whole.
pub(crate) struct Bounded {
    pub(crate) bytes: Vec<u8>,
    max: usize,
}

/// The error [`Bounded`] writes fail with.
#[derive(Debug, thiserror::Error)]
#[error("the result limit is reached")]
struct Full;

impl Bounded {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            bytes: Vec::new(),
            max,
        }
    }
}

/// The error a failed write to [`Bounded`] of `max` bytes is: the limit, or a fault.
pub(crate) fn write_error(error: std::io::Error, max: usize) -> SparqlError {
    if error.get_ref().is_some_and(|e| e.is::<Full>()) {
        SparqlError::ResultTooLarge(max)
    } else if let Some(e) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<crate::rdfxml::NotRdfXml>())
    {
        SparqlError::NotExpressible(e.to_string())
    } else {
        SparqlError::Internal(error.to_string())
    }
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.max {
            return Err(std::io::Error::other(Full));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
