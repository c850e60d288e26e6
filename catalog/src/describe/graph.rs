//! The triples being collected, and the statements every kind of resource shares: agents,
//! contact points, themes, licences, languages, places.

use std::collections::HashSet;

use oxigraph::model::{BlankNode, Literal, NamedNode, NamedOrBlankNode, Term, Triple};

use crate::metadata::{Agent, Contact};
use crate::terms::{iri, sort_triples, text};
use crate::vocab::{self, DCAT, DCT, FOAF, RDF, SKOS, VCARD};

/// Triples being collected, with the types of the vocabulary terms they use.
#[derive(Default)]
pub(super) struct Graph {
    triples: HashSet<Triple>,
}

impl Graph {
    pub(super) fn add(&mut self, s: impl Into<NamedOrBlankNode>, p: NamedNode, o: impl Into<Term>) {
        self.triples.insert(Triple::new(s, p, o));
    }

    pub(super) fn a(&mut self, s: impl Into<NamedOrBlankNode>, class: NamedNode) {
        self.add(s, iri(RDF, "type"), class);
    }

    /// An IRI object of `class` (range shapes need the type stated).
    pub(super) fn typed(
        &mut self,
        s: &NamedOrBlankNode,
        p: NamedNode,
        object: &str,
        class: NamedNode,
    ) {
        let o = NamedNode::new_unchecked(object);
        self.a(o.clone(), class);
        self.add(s.clone(), p, o);
    }

    pub(super) fn into_sorted(self) -> Vec<Triple> {
        let mut triples: Vec<Triple> = self.triples.into_iter().collect();
        sort_triples(&mut triples);
        triples
    }

    /// `p` of `s` is `agent`, a `foaf:Agent` with its name and type.
    pub(super) fn agent(&mut self, s: &NamedOrBlankNode, p: NamedNode, agent: &Agent) {
        let node = NamedNode::new_unchecked(&agent.uri);
        self.a(node.clone(), iri(FOAF, "Agent"));
        self.add(node.clone(), iri(FOAF, "name"), text(&agent.name));
        if let Some(kind) = &agent.kind {
            self.typed(
                &node.clone().into(),
                iri(DCT, "type"),
                kind,
                iri(SKOS, "Concept"),
            );
            self.add(
                NamedNode::new_unchecked(kind),
                iri(SKOS, "prefLabel"),
                text(kind.rsplit('/').next().unwrap_or(kind)),
            );
        }
        self.add(s.clone(), p, node);
    }

    /// The contact point of `s`: a `vcard:Kind` blank node labelled `contact-<label>`.
    pub(super) fn contact(&mut self, s: &NamedOrBlankNode, label: &str, contact: &Contact) {
        let node = BlankNode::new_unchecked(format!("contact-{label}"));
        self.a(node.clone(), iri(VCARD, "Kind"));
        self.add(node.clone(), iri(VCARD, "fn"), text(&contact.name));
        if let Some(email) = &contact.email {
            self.add(
                node.clone(),
                iri(VCARD, "hasEmail"),
                NamedNode::new_unchecked(format!("mailto:{email}")),
            );
        }
        if let Some(url) = &contact.url {
            self.add(
                node.clone(),
                iri(VCARD, "hasURL"),
                NamedNode::new_unchecked(url),
            );
        }
        self.add(s.clone(), iri(DCAT, "contactPoint"), node);
    }

    /// The EU data themes of `s`, each a `skos:Concept` of the theme scheme.
    pub(super) fn themes(&mut self, s: &NamedOrBlankNode, codes: &[String]) {
        for code in codes {
            let (theme, label) = vocab::theme(code).expect("themes are checked at load");
            let node = NamedNode::new_unchecked(&theme);
            self.a(node.clone(), iri(SKOS, "Concept"));
            self.add(
                node.clone(),
                iri(SKOS, "prefLabel"),
                Literal::new_language_tagged_literal_unchecked(label, "en"),
            );
            self.add(
                node.clone(),
                iri(SKOS, "inScheme"),
                NamedNode::new_unchecked(vocab::theme_scheme()),
            );
            self.add(s.clone(), iri(DCAT, "theme"), node);
        }
    }

    /// The keywords of `s`.
    pub(super) fn keywords(&mut self, s: &NamedOrBlankNode, keywords: &[String]) {
        for keyword in keywords {
            self.add(s.clone(), iri(DCAT, "keyword"), text(keyword));
        }
    }

    /// The licence of `s`.
    pub(super) fn license(&mut self, s: &NamedOrBlankNode, license: &str) {
        self.typed(s, iri(DCT, "license"), license, iri(DCT, "LicenseDocument"));
    }

    /// The access rights of `s`.
    pub(super) fn access_rights(&mut self, s: &NamedOrBlankNode, rights: &str) {
        self.typed(
            s,
            iri(DCT, "accessRights"),
            rights,
            iri(DCT, "RightsStatement"),
        );
    }

    /// A standard `s` conforms to.
    pub(super) fn conforms_to(&mut self, s: &NamedOrBlankNode, standard: &str) {
        self.typed(s, iri(DCT, "conformsTo"), standard, iri(DCT, "Standard"));
    }

    /// The languages of `s`.
    pub(super) fn languages(&mut self, s: &NamedOrBlankNode, languages: &[String]) {
        for language in languages {
            self.typed(
                s,
                iri(DCT, "language"),
                language,
                iri(DCT, "LinguisticSystem"),
            );
        }
    }

    /// The places `s` covers.
    pub(super) fn spatial(&mut self, s: &NamedOrBlankNode, places: &[String]) {
        for place in places {
            self.typed(s, iri(DCT, "spatial"), place, iri(DCT, "Location"));
        }
    }
}
