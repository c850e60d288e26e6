//! The catalog as an in-memory RDF dataset, its serialisations, and bounded SPARQL
//! evaluation.
//!
//! SPARQL runs over an `oxrdf::Dataset` rather than an oxigraph `Store`: the store normalises
//! literals of derived XSD types (`xsd:nonNegativeInteger` becomes `xsd:integer`), so answers
//! would disagree with the catalog; the dataset keeps every term as written. (Aggregates such
//! as MAX still compute in `xsd:integer`, which is why the catalog's own counts are
//! `xsd:integer`; only `dcat:byteSize` is `xsd:nonNegativeInteger`, as DCAT-AP requires.)

use std::sync::Arc;
use std::time::Duration;

use oxigraph::io::{RdfFormat, RdfSerializer};
use oxigraph::model::{Dataset, GraphName, NamedNode, NamedOrBlankNode, Term, Triple};
use oxigraph::sparql::results::{QueryResultsFormat, QueryResultsSerializer};
use oxigraph::sparql::{
    CancellationToken, PreparedSparqlQuery, QueryEvaluationError, QueryResults, SparqlEvaluator,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::iris::Iris;
use crate::negotiate::{self, Offer};
use crate::vocab::PREFIXES;
use crate::worker::WorkerCommand;

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

/// Why a SPARQL request failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SparqlError {
    /// The query text is longer than allowed (413).
    #[error("the query is {len} bytes; this endpoint accepts at most {max}")]
    TooLong {
        /// Bytes sent.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The query nests deeper than allowed (400).
    #[error(
        "the query nests deeper than the limit of {max} levels (each bracket is a level, and so \
         is each link of a chain such as || && ! + - * / or of a group's OPTIONAL, UNION, \
         FILTER and BIND); flatten it, e.g. with IN (...) or VALUES instead of long || chains"
    )]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The query does not parse (400); the message says where.
    #[error("SPARQL syntax error: {0}")]
    Syntax(String),
    /// A SPARQL Update was sent (403).
    #[error("this endpoint is read-only: SPARQL Update is not accepted")]
    Update,
    /// The request is malformed in another way (400).
    #[error("{0}")]
    BadRequest(String),
    /// No result format the client accepts (406).
    #[error(
        "none of the accepted media types ({accept}) can carry this result; available: {available}"
    )]
    NotAcceptable {
        /// The Accept header.
        accept: String,
        /// What the endpoint can send for this query.
        available: String,
    },
    /// The result cannot be written in the format asked for (406), e.g. RDF/XML of a
    /// predicate that has no XML local name.
    #[error("{0}; ask for Turtle, N-Triples or JSON-LD")]
    NotExpressible(String),
    /// Every evaluation slot stayed taken (429).
    #[error("too many SPARQL queries at once; try again shortly")]
    Busy,
    /// The query ran longer than allowed (503).
    #[error("the query ran longer than the limit of {0:?} and was stopped")]
    Timeout(Duration),
    /// The result is larger than allowed (400).
    #[error("the result has more than {0} solutions or triples; narrow the query or add a LIMIT")]
    TooManyResults(usize),
    /// The serialised result is larger than allowed (400).
    #[error(
        "the result is larger than the limit of {0} bytes; select fewer or shorter values, or add a LIMIT"
    )]
    ResultTooLarge(usize),
    /// The query needed more memory or CPU than a query may use (503).
    #[error("{0}")]
    ResourceLimit(String),
    /// The query uses something the endpoint does not offer (400), such as SERVICE.
    #[error("unsupported in this endpoint: {0}")]
    Unsupported(String),
    /// A fault of the node (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// An error the SPARQL worker reported: its kind (as [`SparqlError::kind`]) and message.
    #[error("{message}")]
    Reported {
        /// The kind of the original error.
        kind: &'static str,
        /// Its message.
        message: String,
    },
}

impl SparqlError {
    /// A short name of the error kind, as the SPARQL worker reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too_long",
            Self::TooDeep { .. } => "too_deep",
            Self::Syntax(_) => "syntax",
            Self::Update => "update",
            Self::BadRequest(_) => "bad_request",
            Self::NotAcceptable { .. } | Self::NotExpressible(_) => "not_acceptable",
            Self::Busy => "busy",
            Self::Timeout(_) => "timeout",
            Self::TooManyResults(_) => "too_many_results",
            Self::ResultTooLarge(_) => "result_too_large",
            Self::ResourceLimit(_) => "resource_limit",
            Self::Unsupported(_) => "unsupported",
            Self::Internal(_) => "internal",
            Self::Reported { kind, .. } => kind,
        }
    }

    /// The error a worker reported by kind and message; the message is kept as the worker
    /// wrote it, so the client sees the same text as from in-process evaluation.
    pub(crate) fn from_kind(kind: &str, message: String, timeout: Duration) -> Self {
        const KINDS: &[&str] = &[
            "too_long",
            "too_deep",
            "syntax",
            "update",
            "bad_request",
            "not_acceptable",
            "busy",
            "too_many_results",
            "result_too_large",
            "resource_limit",
            "unsupported",
        ];
        match kind {
            "timeout" => Self::Timeout(timeout),
            _ => match KINDS.iter().find(|k| **k == kind) {
                Some(kind) => Self::Reported { kind, message },
                None => Self::Internal(message),
            },
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

/// RDF formats the node writes, in order of preference.
pub const RDF_OFFERS: &[Offer<RdfKind>] = &[
    Offer::new("text/turtle", RdfKind::Turtle),
    Offer::new("application/ld+json", RdfKind::JsonLd),
    Offer::new("application/n-triples", RdfKind::NTriples),
    Offer::new("application/rdf+xml", RdfKind::RdfXml),
];

/// SPARQL result formats, in order of preference.
pub const RESULT_OFFERS: &[Offer<QueryResultsFormat>] = &[
    Offer::new("application/sparql-results+json", QueryResultsFormat::Json),
    Offer::new("application/sparql-results+xml", QueryResultsFormat::Xml),
    Offer::new("text/csv", QueryResultsFormat::Csv),
    Offer::new("text/tab-separated-values", QueryResultsFormat::Tsv),
    Offer::new("application/json", QueryResultsFormat::Json),
    Offer::new("application/xml", QueryResultsFormat::Xml),
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

fn serialize_to<W: std::io::Write>(
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
struct Bounded {
    bytes: Vec<u8>,
    max: usize,
}

/// The error [`Bounded`] writes fail with.
#[derive(Debug, thiserror::Error)]
#[error("the result limit is reached")]
struct Full;

impl Bounded {
    fn new(max: usize) -> Self {
        Self {
            bytes: Vec::new(),
            max,
        }
    }
}

/// The error a failed write to [`Bounded`] of `max` bytes is: the limit, or a fault.
fn write_error(error: std::io::Error, max: usize) -> SparqlError {
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

/// The node's catalog: its triples, kept sorted for output, and a dataset for SPARQL.
pub struct Catalog {
    triples: Vec<Triple>,
    evaluation: Evaluation,
    iris: Iris,
    extra_documents: Vec<(String, Vec<Triple>)>,
    limits: SparqlLimits,
    slots: Arc<Semaphore>,
}

/// Where queries are evaluated.
enum Evaluation {
    /// On a blocking thread, over this dataset.
    InProcess(Arc<Dataset>),
    /// In worker processes, over the catalog written to this N-Triples file.
    Worker(WorkerCommand, tempfile::NamedTempFile),
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("triples", &self.triples.len())
            .field("base", &self.iris.base())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalog of `triples` (already sorted), with documents served beside it (such as the
    /// Flight SQL endpoint description) by IRI.
    pub fn new(
        triples: Vec<Triple>,
        iris: Iris,
        extra_documents: Vec<(String, Vec<Triple>)>,
        limits: SparqlLimits,
    ) -> Result<Self, SparqlError> {
        let dataset = Arc::new(evaluation_dataset(&triples, &iris.catalog()));
        let slots = Arc::new(Semaphore::new(limits.max_concurrent.max(1)));
        Ok(Self {
            triples,
            evaluation: Evaluation::InProcess(dataset),
            iris,
            extra_documents,
            limits,
            slots,
        })
    }

    /// Evaluates queries in worker processes started by `command` (see [`crate::worker`]),
    /// which are killed at the time limit; without this, queries run on a blocking thread
    /// that stops only where oxigraph checks for cancellation.
    pub fn with_worker(mut self, command: WorkerCommand) -> Result<Self, SparqlError> {
        use std::io::Write;
        let internal = |e: std::io::Error| SparqlError::Internal(format!("catalog file: {e}"));
        let mut file = tempfile::Builder::new()
            .prefix("polder-catalog-")
            .suffix(".nt")
            .tempfile()
            .map_err(internal)?;
        file.write_all(&serialize(&self.triples, RdfKind::NTriples))
            .map_err(internal)?;
        file.flush().map_err(internal)?;
        self.evaluation = Evaluation::Worker(command, file);
        Ok(self)
    }

    /// Every triple, sorted.
    pub fn triples(&self) -> &[Triple] {
        &self.triples
    }

    /// The IRIs of the catalog.
    pub fn iris(&self) -> &Iris {
        &self.iris
    }

    /// The limits on SPARQL queries.
    pub fn limits(&self) -> &SparqlLimits {
        &self.limits
    }

    /// What the catalog says about `iri`: the triples with it as subject, and those of the
    /// blank nodes they lead to (its concise bounded description). None if it is not a
    /// subject of the catalog.
    pub fn describe(&self, iri: &str) -> Option<Vec<Triple>> {
        if let Some((_, document)) = self.extra_documents.iter().find(|(i, _)| i == iri) {
            return Some(document.clone());
        }
        let start: NamedOrBlankNode = NamedNode::new(iri).ok()?.into();
        let mut out = Vec::new();
        let mut pending = vec![start];
        let mut seen = Vec::new();
        while let Some(subject) = pending.pop() {
            if seen.contains(&subject) {
                continue;
            }
            for triple in self.triples.iter().filter(|t| t.subject == subject) {
                if let Term::BlankNode(b) = &triple.object {
                    pending.push(b.clone().into());
                }
                out.push(triple.clone());
            }
            seen.push(subject);
        }
        (!out.is_empty()).then(|| {
            crate::terms::sort_triples(&mut out);
            out
        })
    }

    /// Evaluates a SPARQL query within the limits and serialises its result in the best
    /// format `accept` allows.
    ///
    /// The query text is checked for length and nesting here; with a worker (see
    /// [`Catalog::with_worker`]) the node never parses it: the worker does, and reports syntax
    /// errors and updates. Without one, it is parsed and evaluated on a thread of its own with
    /// a large stack.
    pub async fn query(&self, query: &str, accept: Option<&str>) -> Result<Answer, SparqlError> {
        self.query_in(query, accept, None).await
    }

    /// [`Catalog::query`] over the dataset that the request's `default-graph-uri` and
    /// `named-graph-uri` parameters name (None without them: the query's own FROM and FROM
    /// NAMED, or else the catalog as the default graph). See [`RequestDataset`].
    pub async fn query_in(
        &self,
        query: &str,
        accept: Option<&str>,
        dataset_parameters: Option<RequestDataset>,
    ) -> Result<Answer, SparqlError> {
        if query.len() > self.limits.max_query_bytes {
            return Err(SparqlError::TooLong {
                len: query.len(),
                max: self.limits.max_query_bytes,
            });
        }
        crate::nesting::check(query, self.limits.max_depth)?;
        let permit = tokio::time::timeout(
            self.limits.queue_timeout,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        .map_err(|_| SparqlError::Busy)?
        .map_err(|_| SparqlError::Internal("the endpoint is shutting down".into()))?;

        let dataset = match &self.evaluation {
            Evaluation::InProcess(dataset) => Arc::clone(dataset),
            Evaluation::Worker(command, file) => {
                // The worker holds the slot until it has exited or been killed, which may be
                // after this returns: while the client reads the result.
                let result = crate::worker::evaluate(
                    command,
                    file.path(),
                    crate::worker::Request {
                        query: query.to_string(),
                        accept: accept.map(str::to_string),
                        graph: self.iris.catalog(),
                        dataset: dataset_parameters,
                        max_results: self.limits.max_results,
                        max_result_bytes: self.limits.max_result_bytes,
                    },
                    &self.limits,
                    permit,
                )
                .await;
                if let Err(SparqlError::Timeout(timeout)) = &result {
                    warn!(?timeout, "SPARQL query stopped at its time limit");
                }
                return result;
            }
        };
        let token = CancellationToken::new();
        let limits = self.limits.clone();
        let query = query.to_string();
        let accept = accept.map(str::to_string);
        let graph = self.iris.catalog();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let evaluator_token = token.clone();
        std::thread::Builder::new()
            .name("sparql-query".into())
            .stack_size(EVALUATION_STACK_BYTES)
            .spawn(move || {
                let _permit = permit; // the slot is free only once evaluation really ends
                let result = prepare(&query, Some(evaluator_token), &graph, dataset_parameters)
                    .and_then(|prepared| {
                        let results = prepared
                            .on_queryable_dataset(&*dataset)
                            .execute()
                            .map_err(evaluation_error)?;
                        serialize_results(results, accept.as_deref(), &limits)
                    });
                let _ = sender.send(result);
            })
            .map_err(|e| SparqlError::Internal(format!("cannot start a query thread: {e}")))?;
        let timeout = self.limits.timeout;
        match tokio::time::timeout(timeout, receiver).await {
            Ok(result) => result.map_err(|_| {
                SparqlError::Internal("the query thread ended without answer".into())
            })?,
            Err(_) => {
                token.cancel();
                warn!(?timeout, "SPARQL query stopped at its time limit");
                Err(SparqlError::Timeout(timeout))
            }
        }
    }
}

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
