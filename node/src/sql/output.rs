//! Where `polder sql` writes results: a text table, CSV, JSON, Parquet or an Arrow IPC file,
//! batch by batch.
//!
//! Parquet and Arrow files keep every column's Arrow type (the Arrow schema travels in the
//! file), and are written to a temporary file next to `--output` that takes its name only once
//! complete: a failed export leaves no half-written file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder as JsonWriterBuilder};
use datafusion::arrow::util::pretty::pretty_format_batches;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tempfile::TempPath;

use super::geoparquet::{GEO_KEY, GeoMetadata};
use crate::cli::OutputFormat;

/// Rows in a Parquet row group at most.
const ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Encoded bytes a Parquet row group may hold (in memory, until it is written out).
const ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;

/// Where results go, in which format. Every format streams batch by batch; `table` keeps only
/// the rows it shows, Parquet at most one row group.
pub struct Output {
    format: OutputFormat,
    sink: Box<dyn Write + Send>,
    max_rows: usize,
    shown: Vec<RecordBatch>,
    rows: usize,
    csv: Option<datafusion::arrow::csv::Writer<Box<dyn Write + Send>>>,
    file: Option<FileExport>,
    path: Option<PathBuf>,
}

/// A Parquet or Arrow file being written to a temporary path.
struct FileExport {
    writer: FileExportWriter,
    /// Removed when dropped: an export that does not finish leaves nothing.
    temp: TempPath,
    /// Whether the result has been written to its end.
    complete: bool,
}

enum FileExportWriter {
    Parquet {
        writer: ArrowWriter<File>,
        /// The schema written, when a column's type has to change (see [`parquet_type`]).
        cast_to: Option<SchemaRef>,
        geo: Option<GeoMetadata>,
    },
    Arrow(FileWriter<BufWriter<File>>),
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
            (OutputFormat::Parquet | OutputFormat::Arrow, None) => {
                let name = format_name(format);
                bail!("--format {name} writes a file: give it with --output FILE")
            }
            (OutputFormat::Parquet | OutputFormat::Arrow, Some(_)) => Box::new(std::io::sink()),
            (_, Some(path)) => Box::new(BufWriter::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            )),
            (_, None) => Box::new(Stdout(std::io::stdout())),
        };
        Ok(Self {
            format,
            sink,
            max_rows,
            shown: vec![],
            rows: 0,
            csv: None,
            file: None,
            path: path.map(Path::to_path_buf),
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
            OutputFormat::Parquet | OutputFormat::Arrow => {
                let name = format_name(self.format);
                if self.file.is_some() {
                    bail!("--format {name} holds one result; the script has more than one query");
                }
                let path = self.path.as_deref().expect("checked in Output::new");
                let (file, temp) = temp_file_for(path)?;
                let writer = if self.format == OutputFormat::Parquet {
                    let written = parquet_schema(&schema)?;
                    FileExportWriter::Parquet {
                        geo: GeoMetadata::for_schema(&schema),
                        writer: ArrowWriter::try_new(
                            file,
                            written.clone(),
                            Some(parquet_properties()),
                        )
                        .context("cannot write this result as Parquet")?,
                        cast_to: (written != schema).then_some(written),
                    }
                } else {
                    FileExportWriter::Arrow(
                        FileWriter::try_new_buffered(file, &schema)
                            .context("cannot write this result as an Arrow file")?,
                    )
                };
                self.file = Some(FileExport {
                    writer,
                    temp,
                    complete: false,
                });
            }
            OutputFormat::Table | OutputFormat::Json => {}
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
                // Every key on every row: a NULL is `null`, not a missing key.
                let mut writer = JsonWriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, LineDelimited>(&mut self.sink);
                writer.write(batch)?;
                writer.finish()?;
            }
            OutputFormat::Parquet | OutputFormat::Arrow => {
                match &mut self.file.as_mut().expect("begun").writer {
                    FileExportWriter::Parquet {
                        writer,
                        cast_to,
                        geo,
                    } => {
                        if let Some(geo) = geo {
                            geo.add(batch);
                        }
                        match cast_to {
                            Some(schema) => writer.write(&cast_batch(batch, schema)?)?,
                            None => writer.write(batch)?,
                        }
                    }
                    FileExportWriter::Arrow(writer) => writer.write(batch)?,
                }
            }
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
            OutputFormat::Parquet | OutputFormat::Arrow => {
                if let Some(file) = &mut self.file {
                    file.complete = true;
                }
            }
            OutputFormat::Json => {}
        }
        self.sink.flush()?;
        Ok(())
    }

    /// Makes the output ready for the next result after one was cut off (an error, Ctrl-C):
    /// a table shows nothing of it, CSV and JSON end what they wrote, and a Parquet or Arrow
    /// file of it is dropped, so that the next result may take its place.
    pub(crate) fn cut_off(&mut self) -> anyhow::Result<()> {
        if self.file.as_ref().is_some_and(|file| !file.complete) {
            self.file = None;
        }
        if self.format == OutputFormat::Table {
            self.shown.clear();
            return Ok(());
        }
        self.end()
    }

    /// Completes the output: writes the Parquet or Arrow footer and gives the file its name.
    /// A result cut short by an error, or an `Output` dropped without this, leaves no file.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Some(FileExport {
            writer,
            temp,
            complete: true,
        }) = self.file.take()
        {
            match writer {
                FileExportWriter::Parquet {
                    mut writer, geo, ..
                } => {
                    if let Some(geo) = geo {
                        writer.append_key_value_metadata(KeyValue::new(
                            GEO_KEY.to_string(),
                            geo.to_json(),
                        ));
                    }
                    writer.close()?;
                }
                FileExportWriter::Arrow(mut writer) => {
                    writer.finish()?;
                    writer.into_inner()?.flush()?;
                }
            }
            let path = self.path.as_deref().expect("checked in Output::new");
            temp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        self.sink.flush()?;
        Ok(())
    }
}

/// How Parquet exports are written: zstd, statistics per page, row groups bounded in rows and
/// in memory (see [`ROW_GROUP_BYTES`]).
fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .build()
}

/// The schema a result is written to Parquet with: its own, but for the types Parquet has no
/// logical type for, which become the closest that keeps every value (docs/analyst-guide.md,
/// Exports): `Timestamp(Second)` becomes milliseconds, `Time32(Second)` milliseconds, `Date64`
/// (whole days) `Date32`. A SQL `INTERVAL` (`Interval(MonthDayNano)`) has no Parquet type.
fn parquet_schema(schema: &SchemaRef) -> anyhow::Result<SchemaRef> {
    if let Some(field) = schema
        .fields()
        .iter()
        .find(|f| f.data_type() == &DataType::Interval(IntervalUnit::MonthDayNano))
    {
        bail!(
            "column {:?} is an INTERVAL, which Parquet cannot hold: cast it (to a string, or an \
             integer of days) or export with --format arrow",
            field.name()
        );
    }
    let fields: Vec<Field> = schema.fields().iter().map(|f| parquet_field(f)).collect();
    let written = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(if &written == schema {
        schema.clone()
    } else {
        written
    })
}

fn parquet_field(field: &Field) -> Field {
    field
        .clone()
        .with_data_type(parquet_type(field.data_type()))
}

/// The Parquet-writable type closest to `data_type`, nested types included.
fn parquet_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            DataType::Timestamp(TimeUnit::Millisecond, tz.clone())
        }
        DataType::Time32(TimeUnit::Second) => DataType::Time32(TimeUnit::Millisecond),
        DataType::Date64 => DataType::Date32,
        DataType::List(item) => DataType::List(Arc::new(parquet_field(item))),
        DataType::LargeList(item) => DataType::LargeList(Arc::new(parquet_field(item))),
        DataType::FixedSizeList(item, n) => {
            DataType::FixedSizeList(Arc::new(parquet_field(item)), *n)
        }
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| parquet_field(f)).collect())
        }
        other => other.clone(),
    }
}

fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> anyhow::Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A new temporary file in the directory of `path`, readable as a file created there would be.
fn temp_file_for(path: &Path) -> anyhow::Result<(File, TempPath)> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".part");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let file = builder
        .tempfile_in(directory)
        .with_context(|| format!("cannot create a file in {}", directory.display()))?;
    Ok(file.into_parts())
}

fn format_name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Table => "table",
        OutputFormat::Csv => "csv",
        OutputFormat::Json => "json",
        OutputFormat::Parquet => "parquet",
        OutputFormat::Arrow => "arrow",
    }
}

/// Standard output that ends the process quietly once its reader has gone
/// (`polder sql ... | head`), as command-line filters do. Rust ignores SIGPIPE, so every later
/// write would fail instead, and writers that flush on the way out (CSV) would panic.
struct Stdout(std::io::Stdout);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        reader_gone(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        reader_gone(self.0.flush())
    }
}

fn reader_gone<T>(result: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(err) = &result
        && err.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
    result
}
