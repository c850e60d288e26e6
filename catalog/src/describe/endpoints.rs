//! The RDF descriptions of the node's two endpoints: the SPARQL 1.1 Service Description
//! (the bare `GET /sparql`) and the description of the Flight SQL endpoint.

use std::collections::HashMap;

use oxigraph::model::{Literal, NamedNode, Triple};

use super::NodeInfo;
use crate::iris::Iris;
use crate::sparql::SparqlLimits;
use crate::vocab::{SD, UDN, XSD};

/// The SPARQL 1.1 Service Description of the endpoint.
pub(crate) fn service_description(
    iris: &Iris,
    triples: usize,
    limits: &SparqlLimits,
) -> Vec<Triple> {
    let endpoint = NamedNode::new_unchecked(iris.sparql_endpoint());
    let sd = |local: &str| NamedNode::new_unchecked(format!("{SD}{local}"));
    let udn = |local: &str| NamedNode::new_unchecked(format!("{UDN}{local}"));
    let rdf_type = NamedNode::new_unchecked("http://www.w3.org/1999/02/22-rdf-syntax-ns#type");
    let formats =
        |local: &str| NamedNode::new_unchecked(format!("http://www.w3.org/ns/formats/{local}"));
    let dataset = oxigraph::model::BlankNode::new_unchecked("dataset");
    let graph = oxigraph::model::BlankNode::new_unchecked("default-graph");
    let available = oxigraph::model::BlankNode::new_unchecked("available-graphs");
    let named = oxigraph::model::BlankNode::new_unchecked("catalog-graph");
    let integer = |n: usize| {
        Literal::new_typed_literal(
            n.to_string(),
            NamedNode::new_unchecked(format!("{XSD}integer")),
        )
    };
    let mut triples = vec![
        Triple::new(endpoint.clone(), rdf_type.clone(), sd("Service")),
        Triple::new(endpoint.clone(), sd("endpoint"), endpoint.clone()),
        Triple::new(
            endpoint.clone(),
            sd("supportedLanguage"),
            sd("SPARQL11Query"),
        ),
        Triple::new(endpoint.clone(), sd("defaultDataset"), dataset.clone()),
        Triple::new(dataset.clone(), rdf_type.clone(), sd("Dataset")),
        Triple::new(dataset.clone(), sd("defaultGraph"), graph.clone()),
        Triple::new(graph.clone(), rdf_type.clone(), sd("Graph")),
        // The graphs a request may name (default-graph-uri, named-graph-uri, FROM, FROM
        // NAMED): the catalog, by its IRI.
        Triple::new(endpoint.clone(), sd("availableGraphs"), available.clone()),
        Triple::new(available.clone(), rdf_type.clone(), sd("GraphCollection")),
        Triple::new(available.clone(), sd("namedGraph"), named.clone()),
        Triple::new(named.clone(), rdf_type.clone(), sd("NamedGraph")),
        Triple::new(
            named.clone(),
            sd("name"),
            NamedNode::new_unchecked(iris.catalog()),
        ),
        Triple::new(named.clone(), sd("graph"), graph.clone()),
        Triple::new(
            graph.clone(),
            NamedNode::new_unchecked("http://rdfs.org/ns/void#triples"),
            integer(triples),
        ),
        Triple::new(
            endpoint.clone(),
            udn("maxResults"),
            integer(limits.max_results),
        ),
        Triple::new(
            endpoint.clone(),
            udn("maxQueryBytes"),
            integer(limits.max_query_bytes),
        ),
        Triple::new(
            endpoint.clone(),
            udn("queryTimeout"),
            Literal::new_typed_literal(
                format!("PT{}S", limits.timeout.as_secs_f64()),
                NamedNode::new_unchecked(format!("{XSD}dayTimeDuration")),
            ),
        ),
    ];
    for format in [
        "SPARQL_Results_JSON",
        "SPARQL_Results_XML",
        "SPARQL_Results_CSV",
        "SPARQL_Results_TSV",
        "Turtle",
        "JSON-LD",
        "N-Triples",
        "RDF_XML",
    ] {
        triples.push(Triple::new(
            endpoint.clone(),
            sd("resultFormat"),
            formats(format),
        ));
    }
    crate::terms::sort_triples(&mut triples);
    triples
}

/// The machine-readable description of the Flight SQL endpoint, served at its IRI.
pub fn flight_description(
    iris: &Iris,
    node: &NodeInfo,
    tables: &[String],
    extra: &HashMap<&str, String>,
) -> Vec<Triple> {
    let description = NamedNode::new_unchecked(iris.flight_description());
    let udn = |local: &str| NamedNode::new_unchecked(format!("{UDN}{local}"));
    let text = |s: &str| Literal::new_simple_literal(s);
    let mut triples = vec![
        Triple::new(
            description.clone(),
            NamedNode::new_unchecked("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"),
            udn("FlightSqlEndpoint"),
        ),
        Triple::new(
            description.clone(),
            NamedNode::new_unchecked("http://purl.org/dc/terms/conformsTo"),
            NamedNode::new_unchecked(crate::vocab::FLIGHT_SQL_BINDING),
        ),
        Triple::new(
            description.clone(),
            udn("endpointURL"),
            NamedNode::new_unchecked(&node.flight_endpoint_url),
        ),
        Triple::new(description.clone(), udn("sqlCatalog"), text(&node.name)),
        Triple::new(description.clone(), udn("sqlSchema"), text("public")),
        Triple::new(
            description.clone(),
            udn("serverName"),
            text(&node.server_name),
        ),
        Triple::new(
            description.clone(),
            udn("serverVersion"),
            text(&node.server_version),
        ),
        Triple::new(
            description.clone(),
            udn("service"),
            NamedNode::new_unchecked(iris.flight_service()),
        ),
    ];
    for table in tables {
        triples.push(Triple::new(
            description.clone(),
            udn("sqlTable"),
            text(&format!("{}.public.{table}", node.name)),
        ));
    }
    for (key, value) in extra {
        triples.push(Triple::new(description.clone(), udn(key), text(value)));
    }
    crate::terms::sort_triples(&mut triples);
    triples
}
