//! RDF/XML, the format SPARQLWrapper and rdflib's SPARQLStore ask for by default, written by
//! oxigraph's serializer with three guards for what XML cannot carry as oxigraph writes it:
//! predicates without an XML local name and characters XML 1.0 forbids are refused (the
//! client can ask for another format), blank node labels are renamed to valid XML names, and
//! carriage returns in literals are written as character references so that they survive
//! XML's line-end normalisation.

use std::collections::HashMap;
use std::io::Write;

use oxigraph::io::{RdfFormat, RdfSerializer};
use oxigraph::model::{BlankNode, NamedOrBlankNode, Term, Triple};

use crate::vocab::{PREFIXES, RDF};

/// Why triples cannot be written as RDF/XML.
#[derive(Debug, thiserror::Error)]
#[error("this result cannot be written as RDF/XML: {0}")]
pub(crate) struct NotRdfXml(String);

/// Writes `triples` as RDF/XML with the catalog's prefixes.
pub(crate) fn write<W: Write>(writer: W, triples: &[Triple]) -> std::io::Result<W> {
    check(triples).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut serializer = RdfSerializer::from_format(RdfFormat::RdfXml);
    for (prefix, namespace) in PREFIXES {
        serializer = serializer
            .with_prefix(*prefix, *namespace)
            .expect("the prefixes are valid IRIs");
    }
    let mut out = serializer.for_writer(CarriageReturns(writer));
    let mut labels = HashMap::new();
    for triple in triples {
        out.serialize_triple(&renamed(triple, &mut labels))?;
    }
    Ok(out.finish()?.0)
}

/// Predicates RDF/XML reserves for its own syntax.
const RESERVED: [&str; 9] = [
    "Description",
    "li",
    "RDF",
    "ID",
    "about",
    "parseType",
    "resource",
    "nodeID",
    "datatype",
];

fn check(triples: &[Triple]) -> Result<(), NotRdfXml> {
    for triple in triples {
        let predicate = triple.predicate.as_str();
        if local_name(predicate).is_none() {
            return Err(NotRdfXml(format!(
                "the predicate <{predicate}> does not end in an XML name"
            )));
        }
        if predicate
            .strip_prefix(RDF)
            .is_some_and(|local| RESERVED.contains(&local))
        {
            return Err(NotRdfXml(format!(
                "the predicate <{predicate}> is reserved by RDF/XML"
            )));
        }
        if let Term::Literal(literal) = &triple.object
            && let Some(c) = literal.value().chars().find(|c| !is_xml_char(*c))
        {
            return Err(NotRdfXml(format!(
                "a literal holds the character U+{:04X}, which XML 1.0 cannot carry",
                u32::from(c)
            )));
        }
    }
    Ok(())
}

/// The local name RDF/XML would write `iri` with: its longest suffix that is an XML name
/// (oxigraph splits predicates the same way); None if there is none.
fn local_name(iri: &str) -> Option<&str> {
    let start = iri.rfind(|c| !is_name_char(c) || c == ':')?;
    let rest = &iri[start..];
    let name = rest.find(|c| is_name_start_char(c) && c != ':')?;
    Some(&rest[name..])
}

/// The triple with blank nodes renamed `b0`, `b1`, ... in order of appearance (oxigraph's own
/// labels may start with a digit, which `rdf:nodeID` does not allow).
fn renamed(triple: &Triple, labels: &mut HashMap<BlankNode, BlankNode>) -> Triple {
    let mut rename = |b: &BlankNode| {
        let next = labels.len();
        labels
            .entry(b.clone())
            .or_insert_with(|| BlankNode::new_unchecked(format!("b{next}")))
            .clone()
    };
    let subject = match &triple.subject {
        NamedOrBlankNode::BlankNode(b) => rename(b).into(),
        named => named.clone(),
    };
    let object = match &triple.object {
        Term::BlankNode(b) => rename(b).into(),
        other => other.clone(),
    };
    Triple::new(subject, triple.predicate.clone(), object)
}

/// Writes `\r` as `&#13;`: oxigraph's XML writer leaves it raw, and XML parsers turn a raw
/// `\r\n` into `\n`. In RDF/XML output a `\r` can only come from a literal or an attribute
/// value, where the character reference is equivalent.
struct CarriageReturns<W>(W);

impl<W: Write> Write for CarriageReturns<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (i, part) in buf.split(|b| *b == b'\r').enumerate() {
            if i > 0 {
                self.0.write_all(b"&#13;")?;
            }
            self.0.write_all(part)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A character of XML 1.0 (`Char`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// XML `NameStartChar`.
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML `NameChar`.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        assert_eq!(
            local_name("http://www.w3.org/ns/dcat#dataset"),
            Some("dataset")
        );
        assert_eq!(local_name("urn:udn:test#column"), Some("column"));
        assert_eq!(local_name("http://example.org/a1"), Some("a1"));
        assert_eq!(local_name("http://example.org/1"), None);
        assert_eq!(local_name("http://example.org/"), None);
    }
}
