//! SPARQL evaluation in a child process, so that a query can be stopped for real.
//!
//! oxigraph checks its cancellation token only when it reads triples from the dataset; a query
//! whose work is joining in memory (a cross product, a star join on a frequent object) runs on,
//! and can allocate without bound, after its time is up. A node therefore evaluates each query
//! in a short-lived worker process (`polder sparql-worker`) with an address-space and CPU
//! limit, and kills it at the deadline. The worker loads the catalog from an N-Triples file
//! (milliseconds for a city's catalog), reads one request from stdin, and writes one response
//! to stdout: a JSON header line, then the serialised result.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use oxigraph::io::{RdfFormat, RdfParser};
use oxigraph::model::Dataset;
use oxigraph::sparql::SparqlEvaluator;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::store::{Answer, SparqlError, serialize_results};

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

#[derive(Serialize, Deserialize)]
struct Request {
    query: String,
    accept: Option<String>,
    max_results: usize,
}

#[derive(Serialize, Deserialize)]
struct Header {
    /// `ok`, or the kind of error.
    status: String,
    content_type: String,
    message: String,
}

/// Most bytes read back from a worker (results are bounded by the result limit already).
const MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Runs one query in a fresh worker, killing it when `timeout` passes.
pub async fn evaluate(
    command: &WorkerCommand,
    catalog_file: &Path,
    query: &str,
    accept: Option<&str>,
    max_results: usize,
    timeout: Duration,
) -> Result<Answer, SparqlError> {
    let internal = |what: &str, e: std::io::Error| {
        SparqlError::Internal(format!("SPARQL worker: {what}: {e}"))
    };
    let mut child = tokio::process::Command::new(&command.program)
        .args(&command.args)
        .arg("--catalog")
        .arg(catalog_file)
        .arg("--memory-limit")
        .arg(command.memory_limit_bytes.to_string())
        .arg("--cpu-seconds")
        .arg((timeout.as_secs() + 2).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| internal("cannot start", e))?;
    let request = serde_json::to_vec(&Request {
        query: query.to_string(),
        accept: accept.map(str::to_string),
        max_results,
    })
    .expect("a request serialises");
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let exchange = async {
        stdin
            .write_all(&request)
            .await
            .map_err(|e| internal("write", e))?;
        drop(stdin);
        let mut output = Vec::new();
        (&mut stdout)
            .take(MAX_OUTPUT_BYTES)
            .read_to_end(&mut output)
            .await
            .map_err(|e| internal("read", e))?;
        let status = child.wait().await.map_err(|e| internal("wait", e))?;
        Ok::<_, SparqlError>((output, status))
    };
    let (output, status) = match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result?,
        Err(_) => {
            // Dropping the exchange drops the child handle, which kills it (kill_on_drop).
            return Err(SparqlError::Timeout(timeout));
        }
    };
    let Some(newline) = output.iter().position(|b| *b == b'\n') else {
        // No header: the worker died, most likely at its memory or CPU limit.
        return Err(SparqlError::ResourceLimit(format!(
            "the query was stopped at the endpoint's memory or CPU limit ({status})"
        )));
    };
    let header: Header = serde_json::from_slice(&output[..newline])
        .map_err(|e| SparqlError::Internal(format!("SPARQL worker: bad header: {e}")))?;
    let body = output[newline + 1..].to_vec();
    match header.status.as_str() {
        "ok" => Ok(Answer {
            content_type: static_media_type(&header.content_type),
            body,
        }),
        kind => Err(SparqlError::from_kind(kind, header.message, timeout)),
    }
}

/// The media types answers use, as static strings.
fn static_media_type(media_type: &str) -> &'static str {
    use oxigraph::sparql::results::QueryResultsFormat;
    for format in [
        QueryResultsFormat::Json,
        QueryResultsFormat::Xml,
        QueryResultsFormat::Csv,
        QueryResultsFormat::Tsv,
    ] {
        if format.media_type() == media_type {
            return format.media_type();
        }
    }
    for kind in [
        crate::store::RdfKind::Turtle,
        crate::store::RdfKind::JsonLd,
        crate::store::RdfKind::NTriples,
    ] {
        if kind.media_type() == media_type {
            return kind.media_type();
        }
    }
    "application/octet-stream"
}

/// The worker's main: `--catalog FILE --memory-limit BYTES --cpu-seconds N`, one request on
/// stdin, one response on stdout.
pub fn run(args: &[String]) -> ExitCode {
    let mut catalog = None;
    let mut memory = None;
    let mut cpu = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--catalog" => catalog = iter.next().map(PathBuf::from),
            "--memory-limit" => memory = iter.next().and_then(|v| v.parse::<u64>().ok()),
            "--cpu-seconds" => cpu = iter.next().and_then(|v| v.parse::<u64>().ok()),
            _ => {}
        }
    }
    let Some(catalog) = catalog else {
        eprintln!("usage: sparql-worker --catalog FILE [--memory-limit BYTES] [--cpu-seconds N]");
        return ExitCode::from(2);
    };
    if let Some(bytes) = memory
        && let Err(e) = rlimit::Resource::AS.set(bytes, bytes)
    {
        eprintln!("sparql-worker: cannot limit memory: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(seconds) = cpu
        && let Err(e) = rlimit::Resource::CPU.set(seconds, seconds + 1)
    {
        eprintln!("sparql-worker: cannot limit CPU time: {e}");
        return ExitCode::FAILURE;
    }
    let (header, body) = match serve_one(&catalog) {
        Ok(answer) => (
            Header {
                status: "ok".into(),
                content_type: answer.content_type.into(),
                message: String::new(),
            },
            answer.body,
        ),
        Err(e) => (
            Header {
                status: e.kind().into(),
                content_type: String::new(),
                message: e.to_string(),
            },
            Vec::new(),
        ),
    };
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &header)
        .map_err(std::io::Error::other)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.write_all(&body))
        .and_then(|()| out.flush());
    if written.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn serve_one(catalog: &Path) -> Result<Answer, SparqlError> {
    let mut request = Vec::new();
    std::io::stdin()
        .take(16 * 1024 * 1024)
        .read_to_end(&mut request)
        .map_err(|e| SparqlError::Internal(e.to_string()))?;
    let request: Request =
        serde_json::from_slice(&request).map_err(|e| SparqlError::Internal(e.to_string()))?;
    let file = std::fs::read(catalog).map_err(|e| SparqlError::Internal(e.to_string()))?;
    // Parsed into a plain dataset, terms as written: a store would rename blank nodes and
    // normalise derived XSD types, so answers would differ from the catalog.
    let dataset = RdfParser::from_format(RdfFormat::NTriples)
        .for_slice(&file)
        .collect::<Result<Dataset, _>>()
        .map_err(|e| SparqlError::Internal(e.to_string()))?;
    let prepared = SparqlEvaluator::new()
        .parse_query(&request.query)
        .map_err(|e| SparqlError::Syntax(e.to_string()))?;
    let results = prepared
        .on_queryable_dataset(&dataset)
        .execute()
        .map_err(crate::store::evaluation_error)?;
    serialize_results(results, request.accept.as_deref(), request.max_results)
}
