//! Where `polder sql` writes results: a text table, CSV, JSON or Parquet, batch by batch.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::pretty::pretty_format_batches;
use parquet::arrow::ArrowWriter;

use crate::cli::OutputFormat;

/// Where results go, in which format. Every format streams batch by batch; `table` keeps only
/// the rows it shows.
pub struct Output {
    format: OutputFormat,
    sink: Box<dyn Write + Send>,
    max_rows: usize,
    shown: Vec<RecordBatch>,
    rows: usize,
    csv: Option<datafusion::arrow::csv::Writer<Box<dyn Write + Send>>>,
    parquet: Option<ArrowWriter<File>>,
    parquet_path: Option<PathBuf>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("format", &self.format)
            .finish()
    }
}

impl Output {
    /// Results in `format` to `path`, or standard output.
    pub fn new(format: OutputFormat, path: Option<&Path>, max_rows: usize) -> anyhow::Result<Self> {
        let sink: Box<dyn Write + Send> = match (format, path) {
            (OutputFormat::Parquet, _) => Box::new(std::io::sink()),
            (_, Some(path)) => Box::new(BufWriter::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            )),
            (_, None) => Box::new(std::io::stdout()),
        };
        Ok(Self {
            format,
            sink,
            max_rows,
            shown: vec![],
            rows: 0,
            csv: None,
            parquet: None,
            parquet_path: path.map(Path::to_path_buf),
        })
    }

    pub(crate) fn begin(&mut self, schema: SchemaRef) -> anyhow::Result<()> {
        self.rows = 0;
        self.shown.clear();
        match self.format {
            OutputFormat::Csv => {
                let sink = std::mem::replace(&mut self.sink, Box::new(std::io::sink()));
                self.csv = Some(
                    datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(sink),
                );
            }
            OutputFormat::Parquet => {
                if self.parquet.is_some() {
                    bail!("--format parquet holds one result; the script has more than one query");
                }
                let path = self.parquet_path.as_ref().expect("checked at start");
                let file = File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                self.parquet = Some(ArrowWriter::try_new(file, schema, None)?);
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Table => {
                let room = self.max_rows.saturating_sub(self.rows);
                if room > 0 {
                    self.shown.push(batch.slice(0, room.min(batch.num_rows())));
                }
            }
            OutputFormat::Csv => self.csv.as_mut().expect("begun").write(batch)?,
            OutputFormat::Json => {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut self.sink);
                writer.write(batch)?;
                writer.finish()?;
            }
            OutputFormat::Parquet => self.parquet.as_mut().expect("begun").write(batch)?,
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    pub(crate) fn end(&mut self) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Table => {
                if !self.shown.is_empty() {
                    writeln!(self.sink, "{}", pretty_format_batches(&self.shown)?)?;
                }
                let shown: usize = self.shown.iter().map(RecordBatch::num_rows).sum();
                if shown < self.rows {
                    writeln!(self.sink, "{} rows (first {shown} shown)", self.rows)?;
                } else {
                    writeln!(
                        self.sink,
                        "{} row{}",
                        self.rows,
                        if self.rows == 1 { "" } else { "s" }
                    )?;
                }
                self.shown.clear();
            }
            OutputFormat::Csv => {
                if let Some(writer) = self.csv.take() {
                    self.sink = writer.into_inner();
                }
            }
            OutputFormat::Json | OutputFormat::Parquet => {}
        }
        self.sink.flush()?;
        Ok(())
    }

    /// Completes the output (the Parquet footer).
    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Some(writer) = self.parquet.take() {
            writer.close()?;
        }
        self.sink.flush()?;
        Ok(())
    }
}

