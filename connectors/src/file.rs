//! Files in a directory, glob or object store as one table, through DataFusion's listing table.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::GetExt;
use datafusion::datasource::file_format::FileFormat as DfFileFormat;
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::prelude::SessionContext;
use tracing::debug;

use crate::config::{CsvConfig, FileFormat, FileTableConfig};
use crate::csv_schema::InferError;
use crate::error::{Error, Result};

/// Opens a Parquet, CSV/TSV, NDJSON or Arrow IPC dataset; the schema is inferred now, so a
/// missing or malformed location fails here, naming the dataset.
pub async fn open_listing_table(
    ctx: &SessionContext,
    config: &FileTableConfig,
    format: FileFormat,
) -> Result<Arc<dyn TableProvider>> {
    let table = config.name.as_str();
    let location = config.location.as_str();
    let url = crate::store::parse_location(config)?;
    crate::store::register_store(ctx, config, &url)?;

    let compression = compression_of(location);
    let file_format = file_format(config, format, compression)?;
    // A file or a glob is taken as given; a directory is filtered by the format's extension.
    let extension = if is_directory(location) {
        format!("{}{}", format.extension(), compression.get_ext().as_str())
    } else {
        String::new()
    };
    let options = ListingOptions::new(file_format).with_file_extension(extension);

    let state = ctx.state();
    let local_csv = match format {
        FileFormat::Csv | FileFormat::Tsv => {
            let default = if format == FileFormat::Tsv { '\t' } else { ',' };
            crate::csv_schema::infer_local(
                ctx,
                &url,
                &options.file_extension,
                &config.csv,
                config.csv.delimiter.unwrap_or(default) as u8,
                compression,
                config.schema_infer_max_records,
            )
            .await
        }
        _ => None,
    };
    let inferred = match local_csv {
        Some(Ok(schema)) => Ok(Arc::new(schema)),
        Some(Err(InferError::NotFound)) => {
            return Err(Error::Unreadable {
                table: table.into(),
                location: location.into(),
                message: InferError::NotFound.to_string(),
            });
        }
        Some(Err(other)) => {
            return Err(Error::Malformed {
                table: table.into(),
                location: location.into(),
                message: other.to_string(),
            });
        }
        None => options.infer_schema(&state, &url).await,
    };
    let schema = inferred.map_err(|e| {
        let message = e.strip_backtrace();
        if message.contains("No such file")
            || message.contains("not found")
            || message.contains("NotFound")
        {
            Error::Unreadable {
                table: table.into(),
                location: location.into(),
                message: "no such file or directory".into(),
            }
        } else {
            Error::Malformed {
                table: table.into(),
                location: location.into(),
                message,
            }
        }
    })?;
    let schema = null_columns_as_text(schema);
    if schema.fields().is_empty() {
        return Err(Error::Unreadable {
            table: table.into(),
            location: location.into(),
            message: "no files found (or the files have no columns)".into(),
        });
    }
    debug!(
        table,
        location,
        columns = schema.fields().len(),
        "inferred schema"
    );
    let listing = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let provider = ListingTable::try_new(listing).map_err(|e| Error::InvalidConfig {
        table: table.into(),
        message: e.strip_backtrace(),
    })?;
    Ok(Arc::new(provider))
}

/// A column whose sampled values were all empty is inferred as type Null, which would drop
/// every later value; serve it as text instead.
fn null_columns_as_text(schema: SchemaRef) -> SchemaRef {
    if !schema
        .fields()
        .iter()
        .any(|f| f.data_type() == &DataType::Null)
    {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Null => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Utf8)
                .with_nullable(true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn is_directory(location: &str) -> bool {
    if location.ends_with('/') {
        return true;
    }
    let local = location.strip_prefix("file://").unwrap_or(location);
    !location.contains("://") && std::path::Path::new(local).is_dir()
        || location.starts_with("file://") && std::path::Path::new(local).is_dir()
}

fn compression_of(location: &str) -> FileCompressionType {
    let lower = location.to_ascii_lowercase();
    if lower.ends_with(".gz") {
        FileCompressionType::GZIP
    } else if lower.ends_with(".bz2") {
        FileCompressionType::BZIP2
    } else if lower.ends_with(".xz") {
        FileCompressionType::XZ
    } else if lower.ends_with(".zst") {
        FileCompressionType::ZSTD
    } else {
        FileCompressionType::UNCOMPRESSED
    }
}

fn file_format(
    config: &FileTableConfig,
    format: FileFormat,
    compression: FileCompressionType,
) -> Result<Arc<dyn DfFileFormat>> {
    Ok(match format {
        FileFormat::Parquet => Arc::new(ParquetFormat::default()),
        FileFormat::Csv | FileFormat::Tsv => {
            let default = if format == FileFormat::Tsv { '\t' } else { ',' };
            Arc::new(
                csv_format(&config.name, &config.csv, default)?
                    .with_file_compression_type(compression),
            )
        }
        FileFormat::Ndjson => Arc::new(
            JsonFormat::default()
                .with_file_compression_type(compression)
                .with_schema_infer_max_rec(config.schema_infer_max_records),
        ),
        FileFormat::Arrow => Arc::new(ArrowFormat),
        other @ (FileFormat::Geojson
        | FileFormat::SensorCommunity
        | FileFormat::Snuffelfiets
        | FileFormat::Telraam
        | FileFormat::SensorThings
        | FileFormat::Postgres) => {
            return Err(Error::InvalidConfig {
                table: config.name.clone(),
                message: format!("{} is not read as a listing table", other.name()),
            });
        }
    })
}

fn csv_format(table: &str, csv: &CsvConfig, default_delimiter: char) -> Result<CsvFormat> {
    let byte = |what: &str, c: char| -> Result<u8> {
        if c.is_ascii() {
            Ok(c as u8)
        } else {
            Err(Error::InvalidConfig {
                table: table.into(),
                message: format!("csv {what} '{c}' must be a single ASCII character"),
            })
        }
    };
    Ok(CsvFormat::default()
        .with_has_header(csv.has_header)
        .with_delimiter(byte(
            "delimiter",
            csv.delimiter.unwrap_or(default_delimiter),
        )?)
        .with_quote(byte("quote", csv.quote)?)
        .with_escape(csv.escape.map(|c| byte("escape", c)).transpose()?)
        .with_comment(csv.comment.map(|c| byte("comment", c)).transpose()?)
        .with_newlines_in_values(csv.newlines_in_values)
        .with_null_regex(csv.null_regex.clone()))
}
