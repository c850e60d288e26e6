//! The catalog as an in-memory RDF dataset, its serialisations, and bounded SPARQL
//! evaluation.
//!
//! SPARQL runs over an `oxrdf::Dataset` rather than an oxigraph `Store`: the store normalises
//! literals of derived XSD types (`xsd:nonNegativeInteger` becomes `xsd:integer`), so answers
//! would disagree with the catalog; the dataset keeps every term as written. (Aggregates such
//! as MAX still compute in `xsd:integer`, which is why the catalog's own counts are
//! `xsd:integer`; only `dcat:byteSize` is `xsd:nonNegativeInteger`, as DCAT-AP requires.)

use std::sync::Arc;

use oxigraph::model::{Dataset, NamedNode, NamedOrBlankNode, Term, Triple};
use oxigraph::sparql::CancellationToken;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::error::SparqlError;
use crate::iris::Iris;
use crate::serialize::{RdfKind, serialize};
use crate::sparql::{
    Answer, EVALUATION_STACK_BYTES, RequestDataset, SparqlLimits, evaluation_dataset,
    evaluation_error, prepare, serialize_results,
};
use crate::worker::{Request, WorkerCommand};

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
        self.check(query)?;
        let permit = self.slot().await?;
        let request = Request {
            query: query.to_string(),
            accept: accept.map(str::to_string),
            graph: self.iris.catalog(),
            dataset: dataset_parameters,
            max_results: self.limits.max_results,
            max_result_bytes: self.limits.max_result_bytes,
        };
        match &self.evaluation {
            Evaluation::InProcess(dataset) => {
                self.in_process(Arc::clone(dataset), request, permit).await
            }
            Evaluation::Worker(command, file) => {
                // The worker holds the slot until it has exited or been killed, which may be
                // after this returns: while the client reads the result.
                let result =
                    crate::worker::evaluate(command, file.path(), request, &self.limits, permit)
                        .await;
                if let Err(SparqlError::Timeout(timeout)) = &result {
                    warn!(?timeout, "SPARQL query stopped at its time limit");
                }
                result
            }
        }
    }

    /// Refuses a query text over the length or nesting limit, before anything parses it.
    fn check(&self, query: &str) -> Result<(), SparqlError> {
        if query.len() > self.limits.max_query_bytes {
            return Err(SparqlError::TooLong {
                len: query.len(),
                max: self.limits.max_query_bytes,
            });
        }
        crate::nesting::check(query, self.limits.max_depth)
    }

    /// An evaluation slot, waited for at most the queue timeout.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, SparqlError> {
        tokio::time::timeout(
            self.limits.queue_timeout,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        .map_err(|_| SparqlError::Busy)?
        .map_err(|_| SparqlError::Internal("the endpoint is shutting down".into()))
    }

    /// Evaluates `request` over `dataset` on a thread of its own with a large stack, holding
    /// `permit` until evaluation really ends; cancelled (where oxigraph checks) at the time
    /// limit.
    async fn in_process(
        &self,
        dataset: Arc<Dataset>,
        request: Request,
        permit: OwnedSemaphorePermit,
    ) -> Result<Answer, SparqlError> {
        let token = CancellationToken::new();
        let limits = self.limits.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let evaluator_token = token.clone();
        std::thread::Builder::new()
            .name("sparql-query".into())
            .stack_size(EVALUATION_STACK_BYTES)
            .spawn(move || {
                let _permit = permit; // the slot is free only once evaluation really ends
                let result = prepare(
                    &request.query,
                    Some(evaluator_token),
                    &request.graph,
                    request.dataset,
                )
                .and_then(|prepared| {
                    let results = prepared
                        .on_queryable_dataset(&*dataset)
                        .execute()
                        .map_err(evaluation_error)?;
                    serialize_results(results, request.accept.as_deref(), &limits)
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
