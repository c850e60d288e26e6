//! One `polder sql` session: the DataFusion session with the nodes as catalogs, where answers
//! go, and the settings the meta-commands change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use polder_federation::{FederatedSession, Peer};

use super::meta::{self, Meta};
use super::script::{self, Item};
use super::{Output, Progress, errors};
use crate::cli::{OutputFormat, SqlArgs};

/// What to do after an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Quit,
}

/// A session: statements and meta-commands run here one after the other.
pub(crate) struct Session {
    pub(crate) ctx: SessionContext,
    /// The nodes, by the catalog each appears as (for progress).
    peers: Vec<(String, Peer)>,
    /// Where answers go (None only while it is being replaced).
    out: Option<Output>,
    format: OutputFormat,
    output: Option<PathBuf>,
    max_rows: usize,
    timer: bool,
    /// An item started and did not end (cancelled): the output may hold part of an answer.
    interrupted: bool,
}

impl Session {
    pub(crate) fn new(
        ctx: SessionContext,
        federation: &FederatedSession,
        out: Output,
        args: &SqlArgs,
    ) -> Self {
        Self {
            ctx,
            peers: federation
                .catalogs
                .iter()
                .map(|c| (c.peer().name().to_string(), c.peer().clone()))
                .collect(),
            out: Some(out),
            format: args.format,
            output: args.output.clone(),
            max_rows: args.max_rows,
            timer: args.timer,
            interrupted: false,
        }
    }

    /// Runs a script: every statement, each failure reported with its line; with `bail`, none
    /// after the first failure. Fails when a statement did.
    pub(crate) async fn run_script(&mut self, script: &str, bail: bool) -> anyhow::Result<()> {
        let items = script::split(script);
        let mut failed = 0;
        for item in &items {
            match self.run_item(item).await {
                Ok(Flow::Quit) => break,
                Ok(Flow::Continue) => {}
                Err(err) => {
                    eprintln!("error at line {}: {}", item.line(), errors::chain(&err));
                    failed += 1;
                    if bail {
                        bail!("stopped at the first error (--bail)");
                    }
                }
            }
        }
        match failed {
            0 => Ok(()),
            1 => bail!("1 error in the script"),
            n => bail!("{n} errors in the script"),
        }
    }

    /// Runs one statement or meta-command, timed when the timer is on. After a failure the
    /// output is ready for the next answer.
    pub(crate) async fn run_item(&mut self, item: &Item) -> anyhow::Result<Flow> {
        if self.interrupted {
            self.recover();
        }
        self.interrupted = true;
        let started = Instant::now();
        let result = match item {
            Item::Sql { text, .. } => self.run_sql(text).await.map(|()| Flow::Continue),
            Item::Meta { text, .. } => self.run_meta(meta::parse(text)?).await,
        };
        self.interrupted = false;
        if result.is_err() {
            self.recover();
        }
        if self.timer && matches!(item, Item::Sql { .. }) && result.is_ok() {
            eprintln!("Run Time: {:.3} s", started.elapsed().as_secs_f64());
        }
        result
    }

    /// Makes the output ready for the next answer after one was cut off (an error, Ctrl-C).
    fn recover(&mut self) {
        // A table shows nothing of a cut-off answer; the other formats end what they wrote.
        if self.format != OutputFormat::Table
            && let Some(out) = &mut self.out
        {
            let _ = out.cut_off();
        }
    }

    /// Runs the statements of `sql`.
    pub(crate) async fn run_sql(&mut self, sql: &str) -> anyhow::Result<()> {
        for plan in super::plan_statements(&self.ctx, sql).await? {
            let prints = super::prints(&plan);
            let progress = Progress::start(&self.peers);
            let stream = super::execute(&self.ctx, plan)
                .await
                .map_err(|e| errors::explain(&self.ctx, sql, e))?;
            if prints {
                let out = self.out.as_mut().expect("an output");
                super::write_stream(&self.ctx, sql, stream, out, &progress).await?;
            } else {
                super::drain(&self.ctx, sql, stream).await?;
            }
        }
        Ok(())
    }

    async fn run_meta(&mut self, meta: Meta) -> anyhow::Result<Flow> {
        match meta {
            Meta::Quit => return Ok(Flow::Quit),
            Meta::Help => println!("{}", meta::HELP),
            Meta::Timer(on) => self.timer = on,
            Meta::Tables => {
                self.run_sql(&format!(
                    "SELECT {} AS name, table_type AS type FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' ORDER BY 1",
                    shown_name()
                ))
                .await?
            }
            Meta::Schema(None) => {
                self.run_sql(&format!(
                    "SELECT {} AS table, column_name AS column, data_type AS type, \
                     is_nullable AS nullable FROM information_schema.columns \
                     WHERE table_schema <> 'information_schema' ORDER BY 1, ordinal_position",
                    shown_name()
                ))
                .await?
            }
            Meta::Schema(Some(name)) => self.describe(&name).await?,
            Meta::Mode(format) => {
                if let Some(path) = &self.output {
                    bail!(
                        "answers go to {}: give .output (back to standard output) before \
                         .mode, or .mode before .output FILE",
                        path.display()
                    );
                }
                self.replace_output(format, None)?;
            }
            Meta::Output(path) => self.replace_output(self.format, path)?,
        }
        Ok(Flow::Continue)
    }

    /// `\d NAME`: the columns of a table and their types.
    async fn describe(&mut self, name: &str) -> anyhow::Result<()> {
        let sql = format!("\\d {name}");
        let table = match self.ctx.table(name).await {
            // Worded as a query's error is, so that it gets the same hint.
            Err(DataFusionError::Plan(m)) if m.starts_with("No table named") => {
                Err(DataFusionError::Plan(format!("table '{name}' not found")))
            }
            other => other,
        }
        .map_err(|e| errors::explain(&self.ctx, &sql, e))?;
        let schema = table.schema().as_arrow().clone();
        let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as _;
        let fields = schema.fields();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("column", DataType::Utf8, false),
                Field::new("type", DataType::Utf8, false),
                Field::new("nullable", DataType::Utf8, false),
            ])),
            vec![
                column(fields.iter().map(|f| f.name().clone()).collect()),
                column(fields.iter().map(|f| f.data_type().to_string()).collect()),
                column(
                    fields
                        .iter()
                        .map(|f| if f.is_nullable() { "YES" } else { "NO" }.to_string())
                        .collect(),
                ),
            ],
        )?;
        let out = self.out.as_mut().expect("an output");
        out.begin(batch.schema())?;
        out.write(&batch)?;
        out.end()
    }

    /// Answers from now on in `format` to `path` (standard output when None).
    fn replace_output(
        &mut self,
        format: OutputFormat,
        path: Option<PathBuf>,
    ) -> anyhow::Result<()> {
        if format == OutputFormat::Parquet && path.is_none() {
            bail!("the format is parquet, which writes a file: give .output FILE");
        }
        let next = Output::new(format, path.as_deref(), self.max_rows)?;
        if let Some(previous) = self.out.replace(next) {
            previous.finish()?;
        }
        self.format = format;
        self.output = path;
        Ok(())
    }

    /// Completes the output.
    pub(crate) fn finish(&mut self) -> anyhow::Result<()> {
        if self.interrupted {
            self.recover();
        }
        match self.out.take() {
            Some(out) => out.finish(),
            None => Ok(()),
        }
    }
}

/// A table's name as the analyst writes it, in `information_schema`: bare for session-local
/// views and tables, `catalog.schema.table` for a node's.
fn shown_name() -> &'static str {
    "CASE WHEN table_catalog = 'datafusion' AND table_schema = 'public' THEN table_name \
     ELSE table_catalog || '.' || table_schema || '.' || table_name END"
}
