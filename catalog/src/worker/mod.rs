//! SPARQL evaluation in a child process, so that a query can be stopped for real.
//!
//! oxigraph checks its cancellation token only when it reads triples from the dataset; a query
//! whose work is joining in memory (a cross product, a star join on a frequent object) runs on,
//! and can allocate without bound, after its time is up. A node therefore evaluates each query
//! in a short-lived worker process (`polder sparql-worker`) with an address-space and CPU
//! limit, and kills it at the deadline. The worker loads the catalog from an N-Triples file
//! (milliseconds for a city's catalog), reads one request from stdin, and writes one response
//! to stdout: a JSON header line, then the serialised result. The node never parses the query
//! itself (only checks its length and nesting, see `nesting.rs`): the worker reports
//! syntax errors and updates in its header. The result streams from the worker's output to the
//! client in bounded chunks; the worker builds it in its own (limited) memory first, so that
//! it can still report an error such as a result over the byte limit in its header.
//!
//! `spawn.rs` is the node's side (start a worker, read its header, stream its result);
//! `process.rs` is the worker's (load the catalog, evaluate, answer).

mod process;
mod spawn;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use self::process::run;
pub(crate) use self::spawn::evaluate;
use crate::error::SparqlErrorKind;
use crate::sparql::RequestDataset;

/// How to start a worker: a program and its arguments, to which `--catalog FILE` is added.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The executable (the node's own binary).
    pub program: PathBuf,
    /// Arguments before `--catalog`, e.g. `["sparql-worker"]`.
    pub args: Vec<String>,
    /// Address-space limit of the worker, in bytes.
    pub memory_limit_bytes: u64,
}

/// What a worker is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) query: String,
    pub(crate) accept: Option<String>,
    /// The IRI of the catalog's graph.
    pub(crate) graph: String,
    /// The dataset the request's protocol parameters name.
    pub(crate) dataset: Option<RequestDataset>,
    pub(crate) max_results: usize,
    pub(crate) max_result_bytes: usize,
}

/// The first line of a worker's output, in JSON: an answer of this media type (whose bytes
/// follow), or an error.
#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Header {
    /// The result follows the header.
    Ok {
        /// Its media type.
        content_type: String,
    },
    /// The query failed; nothing follows.
    Error {
        /// What kind of error it is.
        kind: SparqlErrorKind,
        /// The error's message, as the client is to see it.
        message: String,
    },
}
