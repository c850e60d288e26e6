//! The catalog's two `dcat:DataService`s: Flight SQL for the data, SPARQL for the catalog.

use oxigraph::model::{NamedNode, NamedOrBlankNode};

use super::Context;
use super::graph::Graph;
use crate::terms::{iri, text};
use crate::vocab::{self, DCAT, DCT};

/// What tells one data service from the other.
struct Service {
    iri: String,
    title: String,
    description: String,
    endpoint: String,
    endpoint_description: String,
    standard: &'static str,
}

/// Describes both services as services of `cat`; returns the Flight SQL service's node,
/// which serves every dataset.
pub(super) fn describe(g: &mut Graph, cx: &Context, cat: &NamedOrBlankNode) -> NamedOrBlankNode {
    let (catalog, node, ids) = (cx.catalog, cx.node, &cx.ids);
    let flight = Service {
        iri: ids.flight_service(),
        title: format!("Arrow Flight SQL service of {}", catalog.title),
        description: format!(
            "SQL over Arrow Flight SQL: every dataset of this catalog is a table \
             {}.public.<name>. Connect with an ADBC, JDBC or ODBC Flight SQL driver.",
            node.name
        ),
        endpoint: node.flight_endpoint_url.clone(),
        endpoint_description: ids.flight_description(),
        standard: vocab::FLIGHT_SQL_BINDING,
    };
    let sparql = Service {
        iri: ids.sparql_service(),
        title: format!("SPARQL endpoint of {}", catalog.title),
        description: "SPARQL 1.1 queries over this catalog (DCAT-AP-NL 3.0).".to_string(),
        endpoint: ids.sparql_endpoint(),
        endpoint_description: ids.sparql_endpoint(),
        standard: vocab::SPARQL_PROTOCOL,
    };
    describe_service(g, cx, cat, &sparql);
    let service = describe_service(g, cx, cat, &flight);
    // The UDN conformance classes the node claims (docs/spec.md, "Conformance classes").
    for class in &node.conforms_to {
        g.conforms_to(&service, &class.uri());
    }
    service
}

fn describe_service(
    g: &mut Graph,
    cx: &Context,
    cat: &NamedOrBlankNode,
    service: &Service,
) -> NamedOrBlankNode {
    let catalog = cx.catalog;
    let s: NamedOrBlankNode = NamedNode::new_unchecked(&service.iri).into();
    g.a(s.clone(), iri(DCAT, "DataService"));
    g.add(s.clone(), iri(DCT, "title"), text(&service.title));
    g.add(
        s.clone(),
        iri(DCT, "description"),
        text(&service.description),
    );
    g.add(s.clone(), iri(DCT, "identifier"), text(&service.iri));
    g.add(
        s.clone(),
        iri(DCAT, "endpointURL"),
        NamedNode::new_unchecked(&service.endpoint),
    );
    g.add(
        s.clone(),
        iri(DCAT, "endpointDescription"),
        NamedNode::new_unchecked(&service.endpoint_description),
    );
    g.conforms_to(&s, service.standard);
    g.agent(&s, iri(DCT, "publisher"), &catalog.publisher);
    g.agent(&s, iri(DCT, "creator"), &catalog.creator);
    g.contact(&s, "catalog", &catalog.contact_point);
    g.license(&s, &catalog.license);
    g.access_rights(&s, &catalog.access_rights.iri());
    g.themes(&s, &catalog.themes);
    g.languages(&s, &catalog.languages);
    g.keywords(&s, &catalog.keywords);
    g.add(cat.clone(), iri(DCAT, "service"), s.clone());
    s
}
