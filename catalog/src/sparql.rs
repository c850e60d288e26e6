//! SPARQL evaluation as both the node (in process) and a SPARQL worker do it: the limits, the
//! dataset a query runs over, parsing, and the serialised answer.

use std::time::Duration;

use oxigraph::model::{Dataset, GraphName, NamedNode, NamedOrBlankNode, Triple};
use oxigraph::sparql::results::{QueryResultsFormat, QueryResultsSerializer};
use oxigraph::sparql::{
    CancellationToken, PreparedSparqlQuery, QueryEvaluationError, QueryResults, SparqlEvaluator,
};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::error::SparqlError;
use crate::negotiate::{self, Offer};
use crate::serialize::{Bounded, RDF_OFFERS, serialize_to, write_error};

/// Limits on SPARQL queries.
#[derive(Debug, Clone)]
pub struct SparqlLimits {
    /// Longest query text accepted, in bytes.
    pub max_query_bytes: usize,
    /// Longest a query may run.
    pub timeout: Duration,
    /// Most solutions (SELECT) or triples (CONSTRUCT, DESCRIBE) in one result.
    pub max_results: usize,
    /// Queries evaluated at once.
    pub max_concurrent: usize,
    /// How long a query waits for a slot before it is refused.
    pub queue_timeout: Duration,
    /// Deepest nesting accepted: brackets, and chains the parser turns into equally deep
    /// trees (see `nesting.rs`).
    pub max_depth: usize,
    /// Largest serialised result, in bytes.
    pub max_result_bytes: usize,
}

impl Default for SparqlLimits {
    fn default() -> Self {
        Self {
            max_query_bytes: 64 * 1024,
            timeout: Duration::from_secs(10),
            max_results: 10_000,
            max_concurrent: 4,
            queue_timeout: Duration::from_secs(5),
            max_depth: 128,
            max_result_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A serialised answer.
#[derive(Debug)]
pub struct Answer {
    /// Its media type.
    pub content_type: &'static str,
    /// The bytes, whole or as they come from a SPARQL worker.
    pub body: AnswerBody,
}

/// Chunks of a result as a worker writes them; an error ends the result early (the HTTP
/// response is then cut, so the client cannot take it for a whole one).
pub type ResultStream = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// The body of an [`Answer`].
pub enum AnswerBody {
    /// Serialised in the node.
    Bytes(Vec<u8>),
    /// Streamed from a SPARQL worker, in bounded chunks: the node never holds the whole
    /// result. The worker and its evaluation slot live until the stream ends or is dropped,
    /// and no longer than the query's time limit.
    Stream(ResultStream),
}

impl std::fmt::Debug for AnswerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => f.debug_tuple("Bytes").field(&bytes.len()).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl Answer {
    /// An answer of `body`.
    pub fn bytes(content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            content_type,
            body: AnswerBody::Bytes(body),
        }
    }

    /// The whole body (reading a stream to its end): for tests and small answers.
    pub async fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        use futures::TryStreamExt;
        match self.body {
            AnswerBody::Bytes(bytes) => Ok(bytes),
            AnswerBody::Stream(stream) => {
                stream
                    .try_fold(Vec::new(), |mut all, chunk| async move {
                        all.extend_from_slice(&chunk);
                        Ok(all)
                    })
                    .await
            }
        }
    }
}

/// SPARQL result formats, in order of preference.
pub const RESULT_OFFERS: &[Offer<QueryResultsFormat>] = &[
    Offer::new("application/sparql-results+json", QueryResultsFormat::Json),
    Offer::new("application/sparql-results+xml", QueryResultsFormat::Xml),
    Offer::new("text/csv", QueryResultsFormat::Csv),
    Offer::new("text/tab-separated-values", QueryResultsFormat::Tsv),
    Offer::new("application/json", QueryResultsFormat::Json),
    Offer::new("application/xml", QueryResultsFormat::Xml),
];

/// Stack of the threads that parse and evaluate queries: oxigraph's parser, optimiser and
/// evaluator recurse once or more per level of the query, so this is many times what the
/// deepest query [`SparqlLimits::max_depth`] admits needs, rather than the 2 MiB of a
/// runtime thread.
pub(crate) const EVALUATION_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Parses a query (after [`crate::nesting::check`], on a thread with a large stack); an
/// update sent as a query is refused as an update, not as bad syntax.
pub(crate) fn parse(
    query: &str,
    token: Option<CancellationToken>,
) -> Result<PreparedSparqlQuery, SparqlError> {
    let mut evaluator = SparqlEvaluator::new();
    if let Some(token) = token {
        evaluator = evaluator.with_cancellation_token(token);
    }
    evaluator.parse_query(query).map_err(|syntax| {
        if SparqlEvaluator::new().parse_update(query).is_ok() {
            SparqlError::Update
        } else {
            SparqlError::Syntax(syntax.to_string())
        }
    })
}

/// The RDF dataset a request names with the SPARQL 1.1 Protocol's `default-graph-uri` and
/// `named-graph-uri` parameters, which take the place of the query's FROM and FROM NAMED.
///
/// The endpoint holds one graph, the catalog, named by the catalog's IRI (`<base>/catalog`,
/// where `GET` returns that graph): a request may name it as the default graph, as a named
/// graph, or both; the HTTP layer refuses any other graph IRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDataset {
    /// The catalog is (part of) the default graph; if not, the default graph is empty.
    pub default_graph: bool,
    /// The catalog is a named graph.
    pub named_graph: bool,
}

/// The dataset queries are evaluated over: the catalog as the default graph and, for requests
/// that name it, as the named graph `graph` too.
pub(crate) fn evaluation_dataset(triples: &[Triple], graph: &str) -> Dataset {
    let name = GraphName::from(NamedNode::new_unchecked(graph));
    triples
        .iter()
        .flat_map(|t| {
            [
                t.clone().in_graph(GraphName::DefaultGraph),
                t.clone().in_graph(name.clone()),
            ]
        })
        .collect()
}

/// Parses a query (see [`parse`]) and sets the dataset it is evaluated over: the one the
/// request's parameters name, else the one its FROM and FROM NAMED name, which may only be
/// the catalog's `graph`, else the endpoint's default dataset (the catalog as the default
/// graph and no named graph).
pub(crate) fn prepare(
    query: &str,
    token: Option<CancellationToken>,
    graph: &str,
    parameters: Option<RequestDataset>,
) -> Result<PreparedSparqlQuery, SparqlError> {
    let mut prepared = parse(query, token)?;
    let wanted = match parameters {
        Some(wanted) => wanted,
        None if prepared.dataset().is_default_dataset() => RequestDataset {
            default_graph: true,
            named_graph: false,
        },
        None => {
            let dataset = prepared.dataset();
            let default = dataset.default_graph_graphs().unwrap_or_default();
            let named = dataset.available_named_graphs().unwrap_or_default();
            let names = default
                .iter()
                .map(|name| match name {
                    GraphName::NamedNode(iri) => iri.as_str().to_string(),
                    other => other.to_string(),
                })
                .chain(named.iter().map(|name| match name {
                    NamedOrBlankNode::NamedNode(iri) => iri.as_str().to_string(),
                    other => other.to_string(),
                }));
            for name in names {
                if name != graph {
                    return Err(unknown_graph(&name, graph));
                }
            }
            RequestDataset {
                default_graph: !default.is_empty(),
                named_graph: !named.is_empty(),
            }
        }
    };
    let name = NamedNode::new_unchecked(graph);
    let dataset = prepared.dataset_mut();
    dataset.set_default_graph(if wanted.default_graph {
        vec![GraphName::DefaultGraph]
    } else {
        Vec::new()
    });
    dataset.set_available_named_graphs(if wanted.named_graph {
        vec![name.into()]
    } else {
        Vec::new()
    });
    Ok(prepared)
}

/// The 400 for a graph IRI the endpoint does not hold, naming it (its first 200 characters).
pub fn unknown_graph(iri: &str, graph: &str) -> SparqlError {
    const MAX: usize = 200;
    let shown = match iri.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &iri[..end]),
        None => iri.to_string(),
    };
    SparqlError::BadRequest(format!(
        "the graph <{shown}> is not on this endpoint: its only graph is the catalog, <{graph}>"
    ))
}

pub(crate) fn evaluation_error(error: QueryEvaluationError) -> SparqlError {
    match error {
        QueryEvaluationError::Cancelled => SparqlError::Timeout(Duration::ZERO),
        QueryEvaluationError::Service(_)
        | QueryEvaluationError::UnboundService
        | QueryEvaluationError::InvalidServiceName(_)
        | QueryEvaluationError::UnsupportedService(_) => {
            SparqlError::Unsupported("SERVICE (federated queries)".into())
        }
        QueryEvaluationError::UnsupportedCustomFunction(name) => {
            SparqlError::Unsupported(format!("the function {name}"))
        }
        other => SparqlError::Internal(other.to_string()),
    }
}

/// The offer `accept` prefers, or the 406 error that lists what is available.
pub(crate) fn choose<'a, T>(
    accept: Option<&str>,
    offers: &'a [Offer<T>],
) -> Result<&'a Offer<T>, SparqlError> {
    negotiate::choose(accept, offers).ok_or_else(|| SparqlError::NotAcceptable {
        accept: accept.unwrap_or("").to_string(),
        available: negotiate::media_types(offers).join(", "),
    })
}

pub(crate) fn serialize_results(
    results: QueryResults<'_>,
    accept: Option<&str>,
    limits: &SparqlLimits,
) -> Result<Answer, SparqlError> {
    let max_results = limits.max_results;
    let max_bytes = limits.max_result_bytes;
    let mut out = Bounded::new(max_bytes);
    match results {
        QueryResults::Boolean(value) => {
            let offer = choose(accept, RESULT_OFFERS)?;
            QueryResultsSerializer::from_format(offer.value)
                .serialize_boolean_to_writer(&mut out, value)
                .map_err(|e| write_error(e, max_bytes))?;
            Ok(Answer::bytes(offer.value.media_type(), out.bytes))
        }
        QueryResults::Solutions(solutions) => {
            let offer = choose(accept, RESULT_OFFERS)?;
            let variables = solutions.variables().to_vec();
            let mut count = 0usize;
            let written = (|| {
                let mut writer = QueryResultsSerializer::from_format(offer.value)
                    .serialize_solutions_to_writer(&mut out, variables)
                    .map_err(Err)?;
                for solution in solutions {
                    let solution = solution.map_err(|e| Ok(evaluation_error(e)))?;
                    count += 1;
                    if count > max_results {
                        return Err(Ok(SparqlError::TooManyResults(max_results)));
                    }
                    writer.serialize(&solution).map_err(Err)?;
                }
                writer.finish().map_err(Err)?;
                Ok(())
            })();
            // A write error is the byte limit or a fault; anything else is the error itself.
            written.map_err(|e: Result<SparqlError, std::io::Error>| match e {
                Ok(error) => error,
                Err(write) => write_error(write, max_bytes),
            })?;
            debug!(solutions = count, "SPARQL SELECT answered");
            Ok(Answer::bytes(offer.value.media_type(), out.bytes))
        }
        QueryResults::Graph(triples) => {
            let offer = choose(accept, RDF_OFFERS)?;
            let mut collected = Vec::new();
            for triple in triples {
                collected.push(triple.map_err(evaluation_error)?);
                if collected.len() > max_results {
                    return Err(SparqlError::TooManyResults(max_results));
                }
            }
            // Deterministic output whatever order the evaluation produced.
            crate::terms::sort_triples(&mut collected);
            serialize_to(&mut out, &collected, offer.value)
                .map_err(|e| write_error(e, max_bytes))?;
            Ok(Answer::bytes(offer.value.media_type(), out.bytes))
        }
    }
}
