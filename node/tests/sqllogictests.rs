//! SQL behaviour tests in sqllogictest files, a test target of its own (`harness = false`) as
//! in DataFusion's `datafusion/sqllogictest`.
//!
//! Every file in `node/tests/slt/` runs twice:
//!
//! - **in-process**: one DataFusion session holding the three sample cities as catalogs
//!   (`amsterdam.public.air_quality`, ...), as one node would serve them;
//! - **federated**: three nodes on loopback, each serving its own city, queried through the
//!   federated session of `polder sql` (every remote part pushed down as the federation decides).
//!
//! The same file must pass both ways: federation changes where the work happens, never the
//! answer. Files in `node/tests/slt/federated/` run only federated: what they check exists only
//! there, such as the SQL `EXPLAIN` shows being sent to each node. Floating-point values are
//! printed with four decimals, since a sum over partitions may differ in its last bits with
//! the order rows arrive in.
//!
//! ```sh
//! cargo test -p polder-node --test sqllogictests              # every file, both ways
//! cargo test -p polder-node --test sqllogictests -- federation # files whose path has it
//! POLDER_SLT_COMPLETE=1 cargo test -p polder-node --test sqllogictests -- explain
//! ```
//!
//! `POLDER_SLT_COMPLETE=1` writes the answers of the records instead of checking them, in the
//! first mode a file runs in (in-process, or federated for `federated/`): review the diff, and
//! check new answers against another engine before committing them. A new file is picked up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use polder_federation::FederationOptions;
use polder_node::datasets::{self, SampleFiles, SharedReadiness};
use polder_node::startup::RunningNode;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

/// Where the files are; those under [`FEDERATED_ONLY`] run only federated.
const SLT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slt");
const FEDERATED_ONLY: &str = "federated";

/// Where a file's records run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    InProcess,
    Federated,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::InProcess => "in-process",
            Mode::Federated => "federated",
        })
    }
}

/// One `.slt` file.
#[derive(Debug)]
struct TestFile {
    path: PathBuf,
    /// The path under [`SLT_DIR`], as printed and matched by the filters.
    name: String,
    federated_only: bool,
}

impl TestFile {
    fn runs_in(&self, mode: Mode) -> bool {
        mode == Mode::Federated || !self.federated_only
    }

    /// The mode whose answers `POLDER_SLT_COMPLETE` writes.
    fn completes_in(&self) -> Mode {
        if self.federated_only {
            Mode::Federated
        } else {
            Mode::InProcess
        }
    }
}

/// A session the runner sends each record's SQL to.
struct Session(SessionContext);

#[async_trait::async_trait]
impl AsyncDB for Session {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let df = self.0.sql(sql).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = vec![];
        for batch in &batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| Ok((c, ArrayFormatter::try_new(c.as_ref(), &options)?)))
                .collect::<Result<Vec<_>, ArrowError>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|(array, formatter)| cell(array.as_ref(), formatter, row))
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "polder"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn cell(array: &dyn Array, formatter: &ArrayFormatter<'_>, row: usize) -> String {
    if array.is_null(row) {
        return "NULL".into();
    }
    let text = match array.data_type() {
        DataType::Float64 => format!("{:.4}", array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => format!("{:.4}", array.as_primitive::<Float32Type>().value(row)),
        _ => formatter.value(row).to_string(),
    };
    if text.is_empty() {
        "(empty)".into()
    } else {
        text
    }
}

/// Every `.slt` file under `dir`, in name order, including those of its subdirectories.
fn files_under(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "slt") {
            files.push(path);
        }
    }
    Ok(())
}

/// The files whose path under [`SLT_DIR`] contains one of `filters` (all when none).
fn test_files(filters: &[String]) -> anyhow::Result<Vec<TestFile>> {
    let root = Path::new(SLT_DIR);
    let mut paths = vec![];
    files_under(root, &mut paths)?;
    paths.sort();
    anyhow::ensure!(!paths.is_empty(), "no .slt files in {SLT_DIR}");
    let files = paths.into_iter().map(|path| {
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        TestFile {
            federated_only: relative.starts_with(FEDERATED_ONLY),
            name: relative.display().to_string(),
            path,
        }
    });
    Ok(files
        .filter(|f| filters.is_empty() || filters.iter().any(|x| f.name.contains(x.as_str())))
        .collect())
}

/// Runs (or completes) one file against `ctx`.
async fn run_file(ctx: &SessionContext, file: &TestFile, mode: Mode) -> anyhow::Result<()> {
    let ctx = ctx.clone();
    let mut runner = sqllogictest::Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok::<_, DataFusionError>(Session(ctx)) }
    });
    if std::env::var_os("POLDER_SLT_COMPLETE").is_some() {
        if file.completes_in() == mode {
            runner
                .update_test_file(
                    &file.path,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        return Ok(());
    }
    runner.run_file_async(&file.path).await?;
    Ok(())
}

/// Runs every file meant for `mode`; prints one line per file; returns the failures.
async fn run_all(ctx: &SessionContext, files: &[TestFile], mode: Mode) -> usize {
    let mut failed = 0;
    for file in files.iter().filter(|f| f.runs_in(mode)) {
        match run_file(ctx, file, mode).await {
            Ok(()) => println!("ok      {mode:<10} {}", file.name),
            Err(err) => {
                failed += 1;
                println!("FAILED  {mode:<10} {}\n{err:#}\n", file.name);
            }
        }
    }
    failed
}

/// One session with the three sample cities as catalogs.
async fn in_process(samples: &mut SampleFiles) -> anyhow::Result<SessionContext> {
    let config = polder_flight_sql::session_config().with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    let readiness = SharedReadiness::default();
    for city in polder_sample_data::CITIES {
        let schema = datasets::register_catalog(&ctx, city);
        let tables = datasets::sample_tables(city);
        datasets::load_all(
            &ctx,
            &schema,
            &tables,
            Default::default(),
            samples,
            &readiness,
        )
        .await?;
    }
    Ok(ctx)
}

/// The number of failed files, both modes.
async fn run(files: Vec<TestFile>) -> anyhow::Result<usize> {
    let mut failed = 0;
    if files.iter().any(|f| f.runs_in(Mode::InProcess)) {
        let mut samples = SampleFiles::default();
        let ctx = in_process(&mut samples).await?;
        failed += run_all(&ctx, &files, Mode::InProcess).await;
    }
    let mut nodes: Vec<RunningNode> = vec![];
    for city in polder_sample_data::CITIES {
        nodes.push(polder_node::demo::start_city(city).await?);
    }
    let peers: Vec<_> = nodes.iter().map(RunningNode::peer_config).collect();
    let (ctx, _federation) =
        polder_node::sql::client_session(&peers, &FederationOptions::default()).await?;
    failed += run_all(&ctx, &files, Mode::Federated).await;
    for node in nodes {
        node.stop().await?;
    }
    Ok(failed)
}

/// Runs on worker threads with the stacks `polder sql` has (DataFusion's planner and
/// optimizer recurse over a plan; a test thread's 2 MiB overflowed).
fn main() -> anyhow::Result<ExitCode> {
    // Words are filters; flags (`--nocapture`, ... from `cargo test`) are ignored.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let files = test_files(&filters)?;
    if files.is_empty() {
        println!("no .slt file matches {filters:?}");
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(polder_node::WORKER_STACK_BYTES)
        .enable_all()
        .build()?;
    let count = files.len();
    let failed = runtime.block_on(async { runtime.spawn(run(files)).await? })?;
    if failed > 0 {
        println!("{failed} of the runs of {count} files failed");
        return Ok(ExitCode::FAILURE);
    }
    println!("{count} files passed");
    Ok(ExitCode::SUCCESS)
}
