//! The catalog crate end to end: metadata validation, the graph built from table facts, and
//! SPARQL evaluation within limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use oxigraph::io::{RdfFormat, RdfParser};
use oxigraph::model::{Literal, NamedNode, Term, Triple};
use polder_catalog::config::{AccessRights, AgentConfig, ColumnConfig, ContactConfig};
use polder_catalog::serialize::{RdfKind, serialize};
use polder_catalog::{
    Catalog, CatalogConfig, ConformanceClass, DatasetConfig, Iris, MetadataError, NodeInfo,
    RequestDataset, SparqlError, SparqlErrorKind, SparqlLimits, TableFacts, build,
};

fn catalog_config() -> CatalogConfig {
    CatalogConfig {
        base_url: Some("https://data.example.org/udn/".into()),
        title: Some("Example city".into()),
        description: Some("Datasets of an example city.".into()),
        publisher: Some(AgentConfig {
            name: Some("Gemeente Voorbeeld".into()),
            uri: Some("https://identifier.overheid.nl/tooi/id/gemeente/gm9999".into()),
            kind: None,
        }),
        contact_point: Some(ContactConfig {
            name: Some("Open data".into()),
            email: Some("opendata@example.org".into()),
            url: None,
        }),
        license: Some("http://creativecommons.org/publicdomain/zero/1.0/".into()),
        access_rights: Some(AccessRights::Public),
        themes: Some(vec!["REGI".into()]),
        languages: vec!["nl".into()],
        ..CatalogConfig::default()
    }
}

fn node() -> NodeInfo {
    NodeInfo {
        name: "voorbeeld".into(),
        flight_endpoint_url: "grpc://data.example.org:50051".into(),
        server_name: "Polder".into(),
        server_version: "0.1.0".into(),
        conforms_to: vec![ConformanceClass::Core, ConformanceClass::Catalog],
    }
}

fn facts() -> Vec<TableFacts> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            true,
        ),
        Field::new("pm2_5", DataType::Float64, true),
        Field::new("station name", DataType::Utf8, true),
    ]));
    vec![TableFacts {
        name: "air_quality".into(),
        schema,
        source_format: Some("csv".into()),
        byte_size: Some(1234),
        modified: None,
        row_count: Some(42),
        temporal: Some(("2025-10-01T00:00:00Z".into(), "2025-10-31T23:00:00Z".into())),
        unmapped_records: None,
    }]
}

fn datasets() -> BTreeMap<String, DatasetConfig> {
    let mut columns = BTreeMap::new();
    columns.insert(
        "pm2_5".to_string(),
        ColumnConfig {
            title: Some("PM2.5".into()),
            description: Some("Fine dust".into()),
            unit: Some("http://qudt.org/vocab/unit/MicroGM-PER-M3".into()),
        },
    );
    BTreeMap::from([(
        "air_quality".to_string(),
        DatasetConfig {
            title: Some("Air quality".into()),
            themes: Some(vec!["ENVI".into()]),
            columns,
            ..DatasetConfig::default()
        },
    )])
}

fn tables() -> Vec<String> {
    vec!["air_quality".into()]
}

fn built() -> Vec<Triple> {
    let metadata = catalog_config().resolve(&datasets(), &tables()).unwrap();
    build(&metadata, &node(), &facts(), &datasets()).unwrap()
}

fn has(triples: &[Triple], s: &str, p: &str, o: impl Into<Term>) -> bool {
    let o = o.into();
    triples.iter().any(|t| {
        t.subject.to_string() == format!("<{s}>") && t.predicate.as_str() == p && t.object == o
    })
}

fn objects(triples: &[Triple], s: &str, p: &str) -> Vec<Term> {
    triples
        .iter()
        .filter(|t| t.subject.to_string() == format!("<{s}>") && t.predicate.as_str() == p)
        .map(|t| t.object.clone())
        .collect()
}

/// The whole graph against a committed snapshot.
#[path = "catalog/snapshot.rs"]
mod snapshot;

const DCAT: &str = "http://www.w3.org/ns/dcat#";
const DCT: &str = "http://purl.org/dc/terms/";
const UDN: &str = "https://w3id.org/udn/ns#";

#[test]
fn every_missing_catalog_field_is_named_in_one_error() {
    let config = CatalogConfig {
        title: Some("Only a title".into()),
        ..CatalogConfig::default()
    };
    let err = config.resolve(&BTreeMap::new(), &tables()).unwrap_err();
    let MetadataError::Incomplete { missing, .. } = &err;
    for key in [
        "catalog.base_url",
        "catalog.description",
        "catalog.publisher",
        "catalog.contact_point",
        "catalog.license",
        "catalog.access_rights",
        "catalog.themes",
    ] {
        assert!(missing.iter().any(|m| m == key), "{key} not in {missing:?}");
    }
    assert!(!missing.iter().any(|m| m == "catalog.title"));
    assert!(err.to_string().contains("catalog.base_url"), "{err}");
}

#[test]
fn invalid_values_are_named() {
    let mut config = catalog_config();
    config.themes = Some(vec!["ENVIRONMENT".into()]);
    config.license = Some("cc0".into());
    let mut datasets = datasets();
    datasets.insert("ghost".into(), DatasetConfig::default());
    let err = config
        .resolve(&datasets, &tables())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'ENVIRONMENT' is not an EU data theme"),
        "{err}"
    );
    assert!(
        err.contains("catalog.license: 'cc0' is not an absolute IRI"),
        "{err}"
    );
    assert!(err.contains("datasets.ghost: no table 'ghost'"), "{err}");
}

#[test]
fn unknown_columns_in_dataset_metadata_fail_the_build() {
    let metadata = catalog_config().resolve(&datasets(), &tables()).unwrap();
    let mut datasets = datasets();
    let dataset = datasets.get_mut("air_quality").unwrap();
    dataset
        .columns
        .insert("pm25".into(), ColumnConfig::default());
    dataset.temporal_column = Some("time".into());
    let err = build(&metadata, &node(), &facts(), &datasets)
        .unwrap_err()
        .to_string();
    assert!(err.contains("datasets.air_quality.columns.pm25"), "{err}");
    assert!(
        err.contains("datasets.air_quality.temporal_column"),
        "{err}"
    );
}

#[test]
fn datasets_inherit_and_override_catalog_metadata() {
    let triples = built();
    let base = "https://data.example.org/udn";
    let ds = format!("{base}/dataset/air_quality");
    assert!(has(
        &triples,
        &ds,
        &format!("{DCT}title"),
        oxigraph::model::Literal::new_simple_literal("Air quality")
    ));
    // Own theme overrides the catalog's.
    let themes = objects(&triples, &ds, &format!("{DCAT}theme"));
    assert_eq!(themes.len(), 1);
    assert!(themes[0].to_string().ends_with("data-theme/ENVI>"));
    // Publisher, contact point and licence are inherited.
    assert!(has(
        &triples,
        &ds,
        &format!("{DCT}publisher"),
        NamedNode::new_unchecked("https://identifier.overheid.nl/tooi/id/gemeente/gm9999")
    ));
    assert_eq!(
        objects(&triples, &ds, &format!("{DCAT}contactPoint")).len(),
        1
    );
    let dist = format!("{ds}/flight-sql");
    assert!(has(
        &triples,
        &dist,
        &format!("{DCT}license"),
        NamedNode::new_unchecked("http://creativecommons.org/publicdomain/zero/1.0/")
    ));
    assert!(has(
        &triples,
        &dist,
        &format!("{DCAT}accessURL"),
        NamedNode::new_unchecked("grpc://data.example.org:50051")
    ));
    assert!(has(
        &triples,
        &dist,
        &format!("{DCAT}accessService"),
        NamedNode::new_unchecked(format!("{base}/service/flight-sql"))
    ));
}

/// The conformance classes the node claims are `dct:conformsTo` of its Flight SQL service,
/// and only those.
#[test]
fn the_flight_service_conforms_to_the_claimed_classes() {
    let triples = built();
    let service = triples
        .iter()
        .find(|t| {
            t.predicate.as_str() == format!("{DCAT}endpointURL")
                && t.object == Term::from(NamedNode::new_unchecked("grpc://data.example.org:50051"))
        })
        .map(|t| t.subject.to_string())
        .expect("the Flight SQL service");
    let service = service.trim_matches(['<', '>']);
    let standards = objects(&triples, service, &format!("{DCT}conformsTo"));
    for class in [ConformanceClass::Core, ConformanceClass::Catalog] {
        assert!(
            standards.contains(&NamedNode::new_unchecked(class.uri()).into()),
            "{standards:?}"
        );
    }
    let security = Term::from(NamedNode::new_unchecked(ConformanceClass::Security.uri()));
    assert!(!standards.contains(&security));
}

#[test]
fn facts_become_triples() {
    let triples = built();
    let ds = "https://data.example.org/udn/dataset/air_quality";
    let rows = objects(&triples, ds, &format!("{UDN}rowCount"));
    assert_eq!(rows.len(), 1);
    assert!(rows[0].to_string().starts_with("\"42\"^^"));
    let sql = objects(&triples, ds, &format!("{UDN}sqlTable"));
    assert_eq!(sql[0].to_string(), "\"voorbeeld.public.air_quality\"");
    // Columns: one per field, in order, with an escaped IRI for the name with a space.
    let schema = format!("{ds}/schema");
    let columns = objects(&triples, &schema, "http://www.w3.org/ns/csvw#column");
    assert_eq!(columns.len(), 4);
    let spaced = format!("{schema}/station%20name");
    assert!(has(
        &triples,
        &spaced,
        &format!("{UDN}columnIndex"),
        oxigraph::model::Literal::new_typed_literal(
            "4",
            NamedNode::new_unchecked("http://www.w3.org/2001/XMLSchema#integer")
        )
    ));
    let pm = format!("{schema}/pm2_5");
    assert!(has(
        &triples,
        &pm,
        "http://qudt.org/schema/qudt/unit",
        NamedNode::new_unchecked("http://qudt.org/vocab/unit/MicroGM-PER-M3")
    ));
    assert!(has(
        &triples,
        &format!("{schema}/sensor_id"),
        "http://www.w3.org/ns/csvw#required",
        oxigraph::model::Literal::from(true)
    ));
    assert!(has(
        &triples,
        &format!("{schema}/timestamp"),
        "http://www.w3.org/ns/csvw#datatype",
        NamedNode::new_unchecked("http://www.w3.org/2001/XMLSchema#dateTimeStamp")
    ));
    // The temporal coverage is a period with the data's first and last instant.
    let turtle = String::from_utf8(serialize(&triples, RdfKind::Turtle)).unwrap();
    assert!(
        turtle.contains("dcat:startDate \"2025-10-01T00:00:00Z\"^^xsd:dateTime"),
        "{turtle}"
    );
}

#[test]
fn output_is_deterministic_and_round_trips() {
    let first = serialize(&built(), RdfKind::Turtle);
    let second = serialize(&built(), RdfKind::Turtle);
    assert_eq!(first, second);
    for kind in RdfKind::ALL {
        let bytes = serialize(&built(), kind);
        let format = match kind {
            RdfKind::Turtle => RdfFormat::Turtle,
            RdfKind::NTriples => RdfFormat::NTriples,
            RdfKind::JsonLd => RdfFormat::JsonLd {
                profile: oxigraph::io::JsonLdProfileSet::empty(),
            },
            RdfKind::RdfXml => RdfFormat::RdfXml,
        };
        let parsed = RdfParser::from_format(format)
            .for_slice(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(parsed.len(), built().len(), "{kind:?}");
    }
}

#[test]
fn json_ld_is_compact() {
    let text = String::from_utf8(serialize(&built(), RdfKind::JsonLd)).unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        document["@context"]["dcat"], "http://www.w3.org/ns/dcat#",
        "{text}"
    );
    let nodes = document["@graph"].as_array().unwrap();
    let dataset = nodes
        .iter()
        .find(|n| n["@id"] == "https://data.example.org/udn/dataset/air_quality")
        .unwrap();
    assert_eq!(dataset["@type"], "dcat:Dataset", "{dataset}");
    assert!(dataset["dct:title"].is_string(), "{dataset}");
    assert!(
        !text.contains("\"http://purl.org/dc/terms/title\""),
        "{text}"
    );
    assert!(!text.contains("rdf:type"), "{text}");
}

#[tokio::test]
async fn rdf_xml_refuses_what_it_cannot_write() {
    for (name, catalog) in both(SparqlLimits::default()) {
        let answer = catalog
            .query(
                "CONSTRUCT { <urn:x:s> <http://example.org/1> \"x\" } WHERE {}",
                Some("application/rdf+xml"),
            )
            .await;
        let error = answer.unwrap_err();
        assert_eq!(
            error.kind(),
            SparqlErrorKind::NotAcceptable,
            "{name}: {error}"
        );
        assert!(
            error.to_string().contains("http://example.org/1"),
            "{name}: {error}"
        );
        let answer = catalog
            .query(
                "CONSTRUCT { [] <urn:x:text> \"a\\r\\nb\" } WHERE {}",
                Some("application/rdf+xml"),
            )
            .await
            .unwrap();
        let bytes = answer.into_bytes().await.unwrap();
        let parsed = RdfParser::from_format(RdfFormat::RdfXml)
            .for_slice(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(
            parsed[0].object,
            Literal::new_simple_literal("a\r\nb").into(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn only_the_catalog_graph_may_be_named() {
    for (name, catalog) in both(SparqlLimits::default()) {
        let graph = catalog.iris().catalog();
        let count = async |query: &str, dataset: Option<RequestDataset>| {
            let answer = catalog.query_in(query, Some("text/csv"), dataset).await?;
            let body = String::from_utf8(answer.into_bytes().await.unwrap()).unwrap();
            Ok::<_, polder_catalog::SparqlError>(body.lines().nth(1).unwrap_or("").to_string())
        };
        let all = count("SELECT (COUNT(*) AS ?n) { ?s ?p ?o }", None)
            .await
            .unwrap();
        assert_eq!(all, built().len().to_string(), "{name}");
        let in_graph = format!("SELECT (COUNT(*) AS ?n) {{ GRAPH <{graph}> {{ ?s ?p ?o }} }}");
        // The default dataset has no named graph; FROM NAMED and named-graph-uri add it.
        assert_eq!(count(&in_graph, None).await.unwrap(), "0", "{name}");
        let named = RequestDataset {
            default_graph: false,
            named_graph: true,
        };
        assert_eq!(count(&in_graph, Some(named)).await.unwrap(), all, "{name}");
        let from_named =
            format!("SELECT (COUNT(*) AS ?n) FROM NAMED <{graph}> {{ GRAPH ?g {{ ?s ?p ?o }} }}");
        assert_eq!(count(&from_named, None).await.unwrap(), all, "{name}");
        // named-graph-uri alone leaves the default graph empty.
        let default = "SELECT (COUNT(*) AS ?n) { ?s ?p ?o }";
        assert_eq!(count(default, Some(named)).await.unwrap(), "0", "{name}");
        let from = format!("SELECT (COUNT(*) AS ?n) FROM <{graph}> {{ ?s ?p ?o }}");
        assert_eq!(count(&from, None).await.unwrap(), all, "{name}");
        // The protocol's dataset takes the place of FROM.
        let both_graphs = RequestDataset {
            default_graph: true,
            named_graph: false,
        };
        let from_other = "SELECT (COUNT(*) AS ?n) FROM <urn:x:other> { ?s ?p ?o }";
        assert_eq!(
            count(from_other, Some(both_graphs)).await.unwrap(),
            all,
            "{name}"
        );
        let error = count(from_other, None).await.unwrap_err();
        assert_eq!(error.kind(), SparqlErrorKind::BadRequest, "{name}: {error}");
        assert!(
            error.to_string().contains("<urn:x:other>"),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(&graph), "{name}: {error}");
    }
}

fn catalog(limits: SparqlLimits) -> Catalog {
    Catalog::new(
        built(),
        Iris::new("https://data.example.org/udn"),
        Vec::new(),
        limits,
    )
    .unwrap()
}

#[tokio::test]
async fn select_ask_construct_answer() {
    let catalog = catalog(SparqlLimits::default());
    let answer = catalog
        .query(
            "PREFIX udn: <https://w3id.org/udn/ns#> SELECT ?t WHERE { ?d udn:sqlTable ?t } ",
            Some("text/csv"),
        )
        .await
        .unwrap();
    assert_eq!(answer.content_type, "text/csv; charset=utf-8");
    let body = String::from_utf8(answer.into_bytes().await.unwrap()).unwrap();
    // The dataset and its distribution both name the table.
    assert_eq!(
        body.matches("voorbeeld.public.air_quality").count(),
        2,
        "{body}"
    );

    let answer = catalog
        .query("ASK { ?s a <http://www.w3.org/ns/dcat#Catalog> }", None)
        .await
        .unwrap();
    let body = answer.into_bytes().await.unwrap();
    assert!(String::from_utf8(body).unwrap().contains("true"));

    let answer = catalog
        .query(
            "DESCRIBE <https://data.example.org/udn/dataset/air_quality>",
            Some("application/n-triples"),
        )
        .await
        .unwrap();
    assert_eq!(answer.content_type, "application/n-triples");
    assert!(!answer.into_bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_queries_get_typed_errors() {
    let catalog = catalog(SparqlLimits {
        max_query_bytes: 200,
        max_results: 5,
        ..SparqlLimits::default()
    });
    let err = catalog
        .query("SELECT ?s WHERE { ?s ?p }", None)
        .await
        .unwrap_err();
    let SparqlError::Syntax(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("1:"), "position missing: {message}");
    let err = catalog
        .query("INSERT DATA { <http://a> <http://b> <http://c> }", None)
        .await
        .unwrap_err();
    assert!(matches!(err, SparqlError::Update), "{err:?}");
    let err = catalog.query(&"#".repeat(201), None).await.unwrap_err();
    assert!(
        matches!(err, SparqlError::TooLong { len: 201, max: 200 }),
        "{err:?}"
    );
    let err = catalog
        .query("SELECT * WHERE { ?s ?p ?o }", None)
        .await
        .unwrap_err();
    assert!(matches!(err, SparqlError::TooManyResults(5)), "{err:?}");
    let err = catalog
        .query("SELECT * WHERE { ?s ?p ?o } LIMIT 1", Some("text/html"))
        .await
        .unwrap_err();
    assert!(matches!(err, SparqlError::NotAcceptable { .. }), "{err:?}");
    let err = catalog
        .query(
            "SELECT * WHERE { SERVICE <http://evil.example/sparql> { ?s ?p ?o } }",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SparqlError::Unsupported(_)), "{err:?}");
    // The store is unchanged and still answers.
    let answer = catalog
        .query("SELECT * WHERE { ?s ?p ?o } LIMIT 5", None)
        .await;
    assert!(answer.is_ok());
}

fn worker(memory_limit_mib: u64) -> polder_catalog::WorkerCommand {
    polder_catalog::WorkerCommand {
        program: env!("CARGO_BIN_EXE_polder-sparql-worker").into(),
        args: Vec::new(),
        memory_limit_bytes: memory_limit_mib * 1024 * 1024,
    }
}

/// A query whose work is an in-memory cross product: oxigraph never checks for cancellation
/// inside it, so only a worker process can be stopped.
const CROSS_PRODUCT: &str =
    "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }";

#[tokio::test]
async fn workers_answer_like_in_process_evaluation() {
    let in_process = catalog(SparqlLimits::default());
    let isolated = catalog(SparqlLimits::default())
        .with_worker(worker(1024))
        .unwrap();
    for (query, accept) in [
        (
            "SELECT ?s ?t WHERE { ?s <http://purl.org/dc/terms/title> ?t } ORDER BY ?s",
            Some("text/csv"),
        ),
        ("ASK { ?s a <http://www.w3.org/ns/dcat#Dataset> }", None),
        (
            "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o } ",
            Some("application/n-triples"),
        ),
    ] {
        let a = in_process.query(query, accept).await.unwrap();
        let b = isolated.query(query, accept).await.unwrap();
        assert_eq!(a.content_type, b.content_type, "{query}");
        assert_eq!(
            a.into_bytes().await.unwrap(),
            b.into_bytes().await.unwrap(),
            "{query}"
        );
    }
    // The node does not parse: syntax errors and updates come from the worker, the same.
    for (query, accept) in [
        ("SELECT * WHERE { ?s ?p ?o }", Some("text/html")),
        ("SELECT * WHERE { ?s ?p ?o } LIMIT 1", Some("text/html")),
        ("SELECT ?s WHERE { ?s ?p }", None),
        ("INSERT DATA { <http://a> <http://b> <http://c> }", None),
        ("DELETE WHERE { ?s ?p ?o }", None),
    ] {
        let a = in_process.query(query, accept).await.unwrap_err();
        let b = isolated.query(query, accept).await.unwrap_err();
        assert_eq!(a.kind(), b.kind(), "{query}");
        assert_eq!(a.to_string(), b.to_string(), "{query}");
    }
}

#[tokio::test]
async fn long_queries_are_stopped_and_free_their_slot() {
    let catalog = catalog(SparqlLimits {
        timeout: Duration::from_millis(500),
        max_results: usize::MAX,
        max_concurrent: 1,
        queue_timeout: Duration::from_secs(10),
        ..SparqlLimits::default()
    })
    .with_worker(worker(4096))
    .unwrap();
    let err = catalog.query(CROSS_PRODUCT, None).await.unwrap_err();
    assert!(matches!(err, SparqlError::Timeout(_)), "{err:?}");
    // The only slot is free again at once: the worker was killed, not left running.
    let started = std::time::Instant::now();
    catalog.query("ASK { ?s ?p ?o }", None).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn queries_are_stopped_at_the_memory_limit() {
    let catalog = catalog(SparqlLimits {
        timeout: Duration::from_secs(120),
        max_results: usize::MAX,
        max_result_bytes: usize::MAX,
        ..SparqlLimits::default()
    })
    .with_worker(worker(256))
    .unwrap();
    // DISTINCT keeps every solution it has seen: memory grows with the cross product.
    let err = catalog
        .query(
            "SELECT DISTINCT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }",
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SparqlErrorKind::ResourceLimit, "{err:?}");
    catalog.query("ASK { ?s ?p ?o }", None).await.unwrap();
}

/// The in-process catalog and one with workers, with `limits`.
fn both(limits: SparqlLimits) -> [(&'static str, Catalog); 2] {
    [
        ("in process", catalog(limits.clone())),
        ("worker", catalog(limits).with_worker(worker(1024)).unwrap()),
    ]
}

/// Queries of 2 to 20 KB whose parse or whose tree is thousands of levels deep.
fn deep_queries() -> Vec<(&'static str, String)> {
    let n = 1000;
    vec![
        ("braces", format!("ASK {}{}", "{".repeat(n), "}".repeat(n))),
        (
            "parentheses",
            format!("ASK {{ FILTER({}1{}) }}", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "blank node property lists",
            format!(
                "ASK {{ ?s ?p {}{} }}",
                "[ <http://x/p> ".repeat(n),
                "]".repeat(n)
            ),
        ),
        (
            "collections",
            format!("ASK {{ ?s ?p {}1{} }}", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "|| chain",
            format!("ASK {{ FILTER(true{}) }}", " || true".repeat(5 * n)),
        ),
        (
            "&& chain",
            format!("ASK {{ FILTER(true{}) }}", "&&true".repeat(5 * n)),
        ),
        (
            "! chain",
            format!("ASK {{ FILTER({}true) }}", "!".repeat(5 * n)),
        ),
        (
            "unary minus",
            format!("ASK {{ FILTER({}1) }}", "- ".repeat(5 * n)),
        ),
        (
            "sum",
            format!("ASK {{ FILTER(1{} > 0) }}", "+1".repeat(5 * n)),
        ),
        (
            "property path",
            format!("ASK {{ ?s <http://x/p>{} ?o }}", "/<http://x/p>".repeat(n)),
        ),
        (
            "OPTIONAL chain",
            format!("ASK {{ ?s ?p ?o {} }}", "OPTIONAL { ?s ?p ?o } ".repeat(n)),
        ),
        (
            "\\u escapes",
            format!("ASK {}{}", "\\u007B".repeat(n), "\\u007D".repeat(n)),
        ),
    ]
}

#[tokio::test]
async fn deep_queries_are_refused_before_parsing() {
    for (how, catalog) in both(SparqlLimits::default()) {
        for (name, query) in deep_queries() {
            let err = catalog.query(&query, None).await.unwrap_err();
            assert!(
                matches!(err, SparqlError::TooDeep { max: 128 }),
                "{how}, {name}: {err:?}"
            );
            assert!(err.to_string().contains("128"), "{err}");
        }
        // Still serving.
        let answer = catalog.query("ASK { ?s ?p ?o }", None).await.unwrap();
        let body = answer.into_bytes().await.unwrap();
        assert!(String::from_utf8(body).unwrap().contains("true"), "{how}");
    }
}

#[tokio::test]
async fn queries_at_the_depth_limit_are_answered() {
    let limits = SparqlLimits::default();
    let max = limits.max_depth;
    // n nested groups around a triple pattern: n levels.
    let nested = |n: usize| format!("ASK {}?s ?p ?o{}", "{".repeat(n), "}".repeat(n));
    // One group, FILTER, its parentheses (3 levels) and a chain of n - 3 more.
    let chain = |n: usize| {
        format!(
            "ASK {{ ?s ?p ?o FILTER(?o = 1{}) }}",
            " || ?o = 1".repeat(n - 3)
        )
    };
    for (how, catalog) in both(limits) {
        for (name, query) in [("groups", nested as fn(usize) -> String), ("chain", chain)] {
            let answer = catalog.query(&query(max), None).await;
            assert!(answer.is_ok(), "{how}, {name} at the limit: {answer:?}");
            let err = catalog.query(&query(max + 1), None).await.unwrap_err();
            assert!(
                matches!(err, SparqlError::TooDeep { .. }),
                "{how}, {name}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_worker_that_overflows_its_stack_is_a_resource_limit() {
    // Without the depth limit the worker parses half a million nested groups and dies of a
    // stack overflow: the node reports it as a resource limit and goes on.
    let n = 500_000;
    let catalog = catalog(SparqlLimits {
        max_depth: usize::MAX,
        max_query_bytes: 4 * n,
        ..SparqlLimits::default()
    })
    .with_worker(worker(1024))
    .unwrap();
    let query = format!("ASK {}{}", "{".repeat(n), "}".repeat(n));
    let err = catalog.query(&query, None).await.unwrap_err();
    assert_eq!(err.kind(), SparqlErrorKind::ResourceLimit, "{err:?}");
    assert!(err.to_string().contains("stack"), "{err}");
    catalog.query("ASK { ?s ?p ?o }", None).await.unwrap();
}

/// A SELECT of one solution whose value is a string of 2^(4 + doublings) bytes, from a query
/// of a few hundred bytes.
fn big_string(doublings: usize) -> String {
    let mut query = String::from("SELECT ?v0 WHERE { BIND(\"0123456789abcdef\" AS ?v0) ");
    for i in 1..=doublings {
        query.push_str(&format!("BIND(CONCAT(?v{p}, ?v{p}) AS ?v{i}) ", p = i - 1));
    }
    query = query.replacen("SELECT ?v0", &format!("SELECT ?v{doublings}"), 1);
    query.push('}');
    query
}

#[tokio::test]
async fn results_over_the_byte_limit_are_refused() {
    let limits = SparqlLimits {
        max_result_bytes: 4 * 1024 * 1024,
        ..SparqlLimits::default()
    };
    for (how, catalog) in both(limits) {
        // 2 MiB of value: answered whole.
        let answer = catalog
            .query(&big_string(17), Some("text/csv"))
            .await
            .unwrap();
        let body = answer.into_bytes().await.unwrap();
        assert!(body.len() > 2 * 1024 * 1024, "{how}: {} bytes", body.len());
        assert_eq!(
            body.iter().filter(|b| **b == b'f').count(),
            1 << 17,
            "{how}: the value is cut"
        );
        // 8 MiB: refused, naming the limit.
        let err = catalog
            .query(&big_string(19), Some("text/csv"))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            SparqlErrorKind::ResultTooLarge,
            "{how}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            SparqlError::ResultTooLarge(4 * 1024 * 1024).to_string()
        );
        assert!(err.to_string().contains("4194304 bytes"), "{err}");
        // The whole catalog is well within it.
        let err = catalog
            .query("CONSTRUCT WHERE { ?s ?p ?o }", None)
            .await
            .map(|_| ());
        assert!(err.is_ok(), "{how}: {err:?}");
    }
    let tiny = catalog(SparqlLimits {
        max_result_bytes: 1000,
        ..SparqlLimits::default()
    })
    .with_worker(worker(1024))
    .unwrap();
    // Many small solutions count too.
    let err = tiny
        .query("SELECT * WHERE { ?s ?p ?o }", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SparqlErrorKind::ResultTooLarge, "{err:?}");
}

#[tokio::test]
async fn worker_results_stream_in_bounded_chunks() {
    use futures::StreamExt;
    let catalog = catalog(SparqlLimits::default())
        .with_worker(worker(1024))
        .unwrap();
    // 16 MiB of value.
    let answer = catalog
        .query(&big_string(20), Some("application/sparql-results+json"))
        .await
        .unwrap();
    let polder_catalog::sparql::AnswerBody::Stream(mut stream) = answer.body else {
        panic!("a worker's result is held whole in the node")
    };
    let (mut total, mut chunks, mut largest) = (0, 0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        chunks += 1;
        largest = largest.max(chunk.len());
    }
    assert!(total > 16 * 1024 * 1024, "{total} bytes");
    assert!(largest <= 64 * 1024, "a chunk of {largest} bytes");
    assert!(chunks >= 256, "{chunks} chunks");
}

#[tokio::test]
async fn a_client_reading_past_the_time_limit_loses_the_result_and_the_slot() {
    use futures::StreamExt;
    let timeout = Duration::from_secs(8);
    let catalog = catalog(SparqlLimits {
        timeout,
        max_concurrent: 1,
        queue_timeout: Duration::from_secs(1),
        ..SparqlLimits::default()
    })
    .with_worker(worker(1024))
    .unwrap();
    let started = tokio::time::Instant::now();
    let answer = catalog.query(&big_string(20), None).await.unwrap();
    let polder_catalog::sparql::AnswerBody::Stream(mut stream) = answer.body else {
        panic!("not streamed")
    };
    stream.next().await.unwrap().unwrap();
    // The client stops reading past the deadline: the worker is killed and the only slot
    // is free again, although the result is not dropped yet.
    tokio::time::sleep_until(started + timeout + Duration::from_secs(1)).await;
    let answer = catalog.query("ASK { ?s ?p ?o }", None).await.unwrap();
    answer.into_bytes().await.unwrap();
    // What the pipe still held arrives, then the result ends with an error, not cut silently.
    let mut ended_with_error = false;
    while let Some(chunk) = stream.next().await {
        if chunk.is_err() {
            ended_with_error = true;
            break;
        }
    }
    assert!(ended_with_error, "the cut result ended as if whole");
}

#[test]
fn every_udn_term_written_is_defined_in_the_ontology() {
    let ontology =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../ontology/udn.ttl")).unwrap();
    let defined: Vec<String> = RdfParser::from_format(RdfFormat::Turtle)
        .for_slice(&ontology)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .into_iter()
        .map(|q| q.subject.to_string())
        .collect();
    let mut used: Vec<String> = built()
        .iter()
        .flat_map(|t| [t.predicate.to_string(), t.object.to_string()])
        .filter(|term| term.starts_with(&format!("<{UDN}")))
        .collect();
    used.extend(
        polder_catalog::flight_description(
            &Iris::new("https://x.example"),
            &node(),
            &tables(),
            &Default::default(),
        )
        .iter()
        .flat_map(|t| [t.predicate.to_string(), t.object.to_string()])
        .filter(|term| term.starts_with(&format!("<{UDN}"))),
    );
    used.sort();
    used.dedup();
    assert!(!used.is_empty());
    for term in used {
        assert!(
            defined.contains(&term),
            "{term} is not defined in ontology/udn.ttl"
        );
    }
}

#[test]
fn json_ld_context_declares_every_prefix() {
    let context = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ontology/context.jsonld"
    ))
    .unwrap();
    for (prefix, namespace) in polder_catalog::vocab::PREFIXES {
        assert!(
            context.contains(&format!("\"{prefix}\": \"{namespace}\"")),
            "ontology/context.jsonld lacks {prefix}: {namespace}"
        );
    }
}
