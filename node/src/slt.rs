//! SQL behaviour tests in sqllogictest files (`node/tests/slt/*.slt`), each run twice:
//!
//! - **in-process**: one DataFusion session holding the three sample cities as catalogs
//!   (`amsterdam.public.air_quality`, ...), as one node would serve them;
//! - **federated**: three nodes on loopback, each serving its own city, queried through the
//!   federated session of `polder sql` (every remote part pushed down as the federation decides).
//!
//! The same file must pass both ways: federation changes where the work happens, never the
//! answer. Floating-point values are printed with four decimals, since a sum over partitions
//! may differ in its last bits with the order rows arrive in.
//!
//! `cargo test -p polder-node slt` runs them; a new file in `node/tests/slt/` is picked up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use polder_federation::{FederationOptions, PeerConfig, PeerUrl};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::config::NodeConfig;
use crate::datasets::{self, Readiness, SampleFiles};
use crate::startup::{self, RunningNode};

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
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
                    DefaultColumnType::FloatingPoint
                }
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    DefaultColumnType::Text
                }
                _ => DefaultColumnType::Any,
            })
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = vec![];
        for batch in &batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| Ok((c, ArrayFormatter::try_new(c.as_ref(), &options)?)))
                .collect::<Result<Vec<_>, datafusion::arrow::error::ArrowError>>()?;
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

fn files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

async fn run_all(ctx: SessionContext, mode: &str) {
    for file in files() {
        let ctx = ctx.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let ctx = ctx.clone();
            async move { Ok::<_, DataFusionError>(Session(ctx)) }
        });
        // Writing the answers of new records: POLDER_SLT_COMPLETE=1 (in-process only); review
        // the diff, and check the new answers against another engine before committing them.
        if mode == "in-process" && std::env::var_os("POLDER_SLT_COMPLETE").is_some() {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            continue;
        }
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {}\n{e}", file.display()));
    }
}

/// One session with the three sample cities as catalogs.
async fn in_process(samples: &mut SampleFiles) -> SessionContext {
    let config = polder_flight_sql::session_config().with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    let readiness = Arc::new(std::sync::RwLock::new(Readiness::default()));
    for city in polder_sample_data::CITIES {
        let schema = datasets::register_catalog(&ctx, city);
        datasets::load_all(
            &ctx,
            &schema,
            &datasets::sample_tables(city),
            Default::default(),
            samples,
            &readiness,
        )
        .await
        .expect("the sample data loads");
    }
    ctx
}

/// A node serving `city`'s sample data on loopback.
pub(crate) async fn node(city: &str) -> RunningNode {
    let mut config = NodeConfig::default();
    config.node.name = city.to_string();
    config.node.flight_addr = "127.0.0.1:0".parse().expect("address");
    config.node.http_addr = "127.0.0.1:0".parse().expect("address");
    startup::start(startup::complete(config).expect("a complete config"))
        .await
        .expect("the node starts")
}

/// The peers a federated session needs to reach `nodes`.
pub(crate) fn peers(nodes: &[RunningNode]) -> Vec<PeerConfig> {
    nodes
        .iter()
        .map(|n| PeerConfig {
            name: n.name.clone(),
            url: PeerUrl::grpc(n.flight_addr),
            catalog: None,
        })
        .collect()
}

/// Runs on worker threads with the stacks `polder sql` has (DataFusion's planner and
/// optimizer recurse over a plan; the test thread's 2 MiB overflowed).
#[test]
fn slt_files_pass_in_process_and_federated() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(crate::WORKER_STACK_BYTES)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(runtime.spawn(slt_files()))
        .expect("the slt files run");
}

async fn slt_files() {
    let mut samples = SampleFiles::default();
    run_all(in_process(&mut samples).await, "in-process").await;

    let mut nodes = vec![];
    for city in polder_sample_data::CITIES {
        nodes.push(node(city).await);
    }
    let peers = peers(&nodes);
    let (ctx, _federation) = crate::sql::client_session(&peers, &FederationOptions::default())
        .await
        .expect("the federated session");
    run_all(ctx, "federated").await;
    for node in nodes {
        node.stop().await.expect("the node stops");
    }
}
