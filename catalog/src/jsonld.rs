//! JSON-LD in compact form: one `@context` with the catalog's prefixes, node objects with
//! `@id` and `@type`, properties as compact IRIs (`dct:title`), and blank nodes that are the
//! object of a single triple embedded where they are used.
//!
//! oxigraph's JSON-LD writer emits expanded properties (full IRIs, `rdf:type` as a property),
//! which is valid but not what people and JSON-LD tooling (framing, compaction against a
//! known context) expect of a published catalog.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use oxigraph::model::{Literal, NamedOrBlankNode, Term, Triple};
use serde_json::{Map, Value};

use crate::vocab::{PREFIXES, RDF, XSD};

/// Writes `triples` (sorted by subject, as [`crate::terms::sort_triples`] leaves them) as a
/// compact JSON-LD document.
pub(crate) fn write<W: Write>(mut writer: W, triples: &[Triple]) -> std::io::Result<W> {
    serde_json::to_writer_pretty(&mut writer, &document(triples))?;
    writer.write_all(b"\n")?;
    Ok(writer)
}

/// The document: `{"@context": {prefixes}, "@graph": [node objects]}`.
fn document(triples: &[Triple]) -> Value {
    let mut by_subject: HashMap<&NamedOrBlankNode, Vec<&Triple>> = HashMap::new();
    let mut subjects = Vec::new();
    for triple in triples {
        by_subject
            .entry(&triple.subject)
            .or_insert_with(|| {
                subjects.push(&triple.subject);
                Vec::new()
            })
            .push(triple);
    }
    // Blank nodes that are the object of exactly one triple are written inside it.
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for triple in triples {
        if let Term::BlankNode(b) = &triple.object {
            *uses.entry(b.as_str()).or_default() += 1;
        }
    }
    // An IRI whose scheme is a prefix of the context (`geo:52.37,4.89`) would be read as a
    // compact IRI: such a prefix is left out of this document.
    let prefixes: Vec<(&str, &str)> = PREFIXES
        .iter()
        .filter(|(prefix, _)| {
            let scheme = format!("{prefix}:");
            !triples
                .iter()
                .any(|t| iris(t).any(|iri| iri.starts_with(&scheme)))
        })
        .copied()
        .collect();
    let mut writer = Writer {
        prefixes: prefixes.clone(),
        by_subject,
        embeddable: uses
            .into_iter()
            .filter_map(|(b, n)| (n == 1).then_some(b))
            .collect(),
        written: HashSet::new(),
    };
    let mut graph = Vec::new();
    // Named subjects first, then blank nodes not embedded anywhere (used several times, or
    // in a cycle), then the rest.
    let mut order = subjects;
    order.sort_by_key(|s| match s {
        NamedOrBlankNode::NamedNode(_) => 0,
        NamedOrBlankNode::BlankNode(b) if !writer.embeddable.contains(b.as_str()) => 1,
        NamedOrBlankNode::BlankNode(_) => 2,
    });
    for subject in order {
        if !writer.written.contains(subject) {
            graph.push(writer.node(subject, true));
        }
    }
    let context: Map<String, Value> = prefixes
        .iter()
        .map(|(prefix, namespace)| ((*prefix).to_string(), Value::from(*namespace)))
        .collect();
    let mut document = Map::new();
    document.insert("@context".into(), Value::Object(context));
    document.insert("@graph".into(), Value::Array(graph));
    Value::Object(document)
}

/// The IRIs of a triple, datatypes included.
fn iris(triple: &Triple) -> impl Iterator<Item = &str> {
    let subject = match &triple.subject {
        NamedOrBlankNode::NamedNode(iri) => Some(iri.as_str()),
        NamedOrBlankNode::BlankNode(_) => None,
    };
    let object = match &triple.object {
        Term::NamedNode(iri) => Some(iri.as_str()),
        Term::Literal(literal) => Some(literal.datatype().as_str()),
        Term::BlankNode(_) => None,
    };
    [subject, Some(triple.predicate.as_str()), object]
        .into_iter()
        .flatten()
}

struct Writer<'a> {
    /// The context's prefixes.
    prefixes: Vec<(&'static str, &'static str)>,
    by_subject: HashMap<&'a NamedOrBlankNode, Vec<&'a Triple>>,
    /// Blank nodes used as the object of one triple only.
    embeddable: HashSet<&'a str>,
    /// Subjects already written (at the top or embedded).
    written: HashSet<&'a NamedOrBlankNode>,
}

impl<'a> Writer<'a> {
    /// The node object of `subject`; `with_id` for top-level nodes (an embedded blank node
    /// needs no name: nothing else refers to it).
    fn node(&mut self, subject: &'a NamedOrBlankNode, with_id: bool) -> Value {
        self.written.insert(subject);
        let mut node = Map::new();
        if with_id {
            node.insert("@id".into(), Value::from(id(subject)));
        }
        let triples = self.by_subject.get(subject).cloned().unwrap_or_default();
        let rdf_type = format!("{RDF}type");
        for triple in triples {
            let (key, value) = match &triple.object {
                Term::NamedNode(class) if triple.predicate.as_str() == rdf_type => (
                    "@type".to_string(),
                    Value::from(self.compact(class.as_str())),
                ),
                object => (self.compact(triple.predicate.as_str()), self.object(object)),
            };
            match node.get_mut(&key) {
                None => {
                    node.insert(key, value);
                }
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
            }
        }
        Value::Object(node)
    }

    fn object(&mut self, object: &'a Term) -> Value {
        match object {
            Term::NamedNode(iri) => id_object(iri.as_str()),
            Term::BlankNode(b) => {
                let subject = self
                    .by_subject
                    .get_key_value(&NamedOrBlankNode::from(b.clone()))
                    .map(|(k, _)| *k);
                match subject {
                    Some(subject)
                        if self.embeddable.contains(b.as_str())
                            && !self.written.contains(subject) =>
                    {
                        self.node(subject, false)
                    }
                    // A blank node with no triples of its own, used once, is still a node.
                    None if self.embeddable.contains(b.as_str()) => Value::Object(Map::new()),
                    _ => id_object(&format!("_:{}", b.as_str())),
                }
            }
            Term::Literal(literal) => self.literal(literal),
        }
    }

    /// `prefix:local` for an IRI in one of the context's namespaces, else the IRI itself.
    ///
    /// Only namespaces ending in `/` or `#` are used (JSON-LD 1.1 expands a compact IRI only with
    /// such prefixes), and never with an empty local part or one that looks like a network path.
    fn compact(&self, iri: &str) -> String {
        self.prefixes
            .iter()
            .filter(|(_, namespace)| namespace.ends_with(['/', '#']))
            .filter_map(|(prefix, namespace)| {
                let local = iri.strip_prefix(namespace)?;
                (!local.is_empty() && !local.starts_with("//")).then_some((
                    namespace.len(),
                    prefix,
                    local,
                ))
            })
            // The longest namespace is the most specific.
            .max_by_key(|(length, _, _)| *length)
            .map_or_else(
                || iri.to_string(),
                |(_, prefix, local)| format!("{prefix}:{local}"),
            )
    }

    /// A literal as a JSON-LD value: a plain string for `xsd:string`, a JSON number or boolean
    /// where the lexical form is canonical (so that it reads back as the same literal), otherwise
    /// a value object with `@language` or `@type`.
    fn literal(&self, literal: &Literal) -> Value {
        let value = literal.value();
        if let Some(language) = literal.language() {
            let mut object = Map::new();
            object.insert("@value".into(), Value::from(value));
            object.insert("@language".into(), Value::from(language));
            return Value::Object(object);
        }
        let datatype = literal.datatype().as_str();
        if datatype == format!("{XSD}string") {
            return Value::from(value);
        }
        if datatype == format!("{XSD}boolean") && (value == "true" || value == "false") {
            return Value::from(value == "true");
        }
        if datatype == format!("{XSD}integer")
            && let Ok(number) = value.parse::<i64>()
            && number.to_string() == value
        {
            return Value::from(number);
        }
        let mut object = Map::new();
        object.insert("@value".into(), Value::from(value));
        object.insert("@type".into(), Value::from(self.compact(datatype)));
        Value::Object(object)
    }
}

fn id(subject: &NamedOrBlankNode) -> String {
    match subject {
        NamedOrBlankNode::NamedNode(iri) => iri.as_str().to_string(),
        NamedOrBlankNode::BlankNode(b) => format!("_:{}", b.as_str()),
    }
}

fn id_object(id: &str) -> Value {
    let mut object = Map::new();
    object.insert("@id".into(), Value::from(id));
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Triple> {
        oxigraph::io::RdfParser::from_format(oxigraph::io::RdfFormat::NTriples)
            .for_slice(text)
            .map(|quad| quad.map(Triple::from))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn iris_are_compacted_where_they_can_be() {
        let triples = parse(concat!(
            "<https://example.org/d> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> ",
            "<http://www.w3.org/ns/dcat#Dataset> .\n",
            "<https://example.org/d> <http://purl.org/dc/terms/> \"empty local name\" .\n",
            "<https://example.org/d> <https://example.org/p> ",
            "\"12\"^^<http://www.w3.org/2001/XMLSchema#integer> .\n",
            "<https://example.org/d> <https://example.org/q> ",
            "\"012\"^^<http://www.w3.org/2001/XMLSchema#integer> .\n",
        ));
        let document = document(&triples);
        let node = &document["@graph"][0];
        assert_eq!(node["@type"], "dcat:Dataset", "{document}");
        assert_eq!(
            node["http://purl.org/dc/terms/"], "empty local name",
            "{document}"
        );
        assert_eq!(node["https://example.org/p"], 12, "{document}");
        assert_eq!(node["https://example.org/q"]["@value"], "012", "{document}");
        assert_eq!(
            node["https://example.org/q"]["@type"], "xsd:integer",
            "{document}"
        );
    }

    #[test]
    fn a_prefix_that_is_a_scheme_in_the_graph_is_left_out() {
        let triples = parse(
            "<https://example.org/d> <http://purl.org/dc/terms/spatial> <geo:52.37,4.89> .\n",
        );
        let document = document(&triples);
        assert!(document["@context"].get("geo").is_none(), "{document}");
        assert!(document["@context"].get("dct").is_some(), "{document}");
        assert_eq!(
            document["@graph"][0]["dct:spatial"]["@id"],
            "geo:52.37,4.89"
        );
    }
}
