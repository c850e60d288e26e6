//! Column types of local CSV/TSV datasets, inferred file by file over whole records.
//!
//! DataFusion infers CSV types chunk by chunk of the byte stream; a column that is empty in the
//! first chunks and numeric later can come out as text. Here each file is read record by record
//! (up to the configured number of records across files) and the types are merged: empty
//! columns take the type of the values found later, integers and decimals become decimals, any
//! other conflict is text.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use crate::config::CsvConfig;

/// Why the types of local CSV files could not be inferred.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InferError {
    /// No file at the location.
    #[error("no such file or directory")]
    NotFound,
    /// The files could not be listed.
    #[error("{}", .0.strip_backtrace())]
    List(DataFusionError),
    /// `null_regex` is not a regular expression.
    #[error("csv null_regex: {0}")]
    NullRegex(#[from] regex::Error),
    /// A file could not be opened.
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is not CSV as configured.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: datafusion::arrow::error::ArrowError,
    },
}

impl From<DataFusionError> for InferError {
    /// A location that does not exist is [`InferError::NotFound`], however the store says it.
    fn from(error: DataFusionError) -> Self {
        let not_found = match error.find_root() {
            DataFusionError::ObjectStore(e) => {
                matches!(e.as_ref(), object_store::Error::NotFound { .. })
            }
            DataFusionError::IoError(e) => e.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        };
        if not_found {
            Self::NotFound
        } else {
            Self::List(error)
        }
    }
}

/// Infers the schema of local, uncompressed or gzip-compressed CSV files; `None` when the
/// location is not local or uses another compression (DataFusion's inference is used then).
pub(crate) async fn infer_local(
    ctx: &SessionContext,
    url: &ListingTableUrl,
    extension: &str,
    csv: &CsvConfig,
    delimiter: u8,
    compression: FileCompressionType,
    max_records: usize,
) -> Option<Result<Schema, InferError>> {
    if url.scheme() != "file"
        || !(compression == FileCompressionType::UNCOMPRESSED
            || compression == FileCompressionType::GZIP)
    {
        return None;
    }
    Some(
        infer(
            ctx,
            url,
            extension,
            csv,
            delimiter,
            compression,
            max_records,
        )
        .await,
    )
}

async fn infer(
    ctx: &SessionContext,
    url: &ListingTableUrl,
    extension: &str,
    csv: &CsvConfig,
    delimiter: u8,
    compression: FileCompressionType,
    max_records: usize,
) -> Result<Schema, InferError> {
    let state = ctx.state();
    let store = ctx.runtime_env().object_store(url.object_store())?;
    let mut files: Vec<_> = url
        .list_all_files(&state, store.as_ref(), extension)
        .await?
        .try_collect()
        .await?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    if files.is_empty() {
        return Err(InferError::NotFound);
    }

    let mut format = Format::default()
        .with_header(csv.has_header)
        .with_delimiter(delimiter)
        .with_quote(csv.quote as u8);
    if let Some(escape) = csv.escape {
        format = format.with_escape(escape as u8);
    }
    if let Some(comment) = csv.comment {
        format = format.with_comment(comment as u8);
    }
    if let Some(null_regex) = &csv.null_regex {
        let regex = regex::Regex::new(null_regex)?;
        format = format.with_null_regex(regex);
    }

    let mut merged: Vec<Field> = vec![];
    let mut remaining = max_records.max(1);
    for file in files {
        if remaining == 0 {
            break;
        }
        let path = std::path::Path::new("/").join(file.location.as_ref());
        let handle = match File::open(&path) {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InferError::NotFound);
            }
            Err(source) => return Err(InferError::Open { path, source }),
        };
        let reader: Box<dyn Read> = if compression == FileCompressionType::GZIP {
            Box::new(flate2::read::MultiGzDecoder::new(handle))
        } else {
            Box::new(handle)
        };
        let (schema, read) = format
            .infer_schema(BufReader::new(reader), Some(remaining))
            .map_err(|source| InferError::Read {
                path: path.clone(),
                source,
            })?;
        remaining = remaining.saturating_sub(read);
        for field in schema.fields() {
            match merged.iter_mut().find(|f| f.name() == field.name()) {
                Some(existing) => {
                    let ty = merge(existing.data_type(), field.data_type());
                    *existing = existing.clone().with_data_type(ty);
                }
                None => merged.push(field.as_ref().clone().with_nullable(true)),
            }
        }
    }
    Ok(Schema::new(merged))
}

fn merge(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        (a, b) if a == b => a.clone(),
        (DataType::Null, other) | (other, DataType::Null) => other.clone(),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            DataType::Float64
        }
        _ => DataType::Utf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn types_come_from_values_found_in_later_records_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = String::from("day,a,b,c\n");
        for i in 0..3000 {
            first.push_str(&format!("d{i},,{i},x\n"));
        }
        first.push_str("late,1.5,7,y\n");
        std::fs::write(dir.path().join("1.csv"), first).unwrap();
        std::fs::write(dir.path().join("2.csv"), "day,a,b,c\nz,2,2.5,3\n").unwrap();
        let url = ListingTableUrl::parse(dir.path().to_str().unwrap()).unwrap();
        let ctx = SessionContext::new();
        let schema = infer_local(
            &ctx,
            &url,
            ".csv",
            &CsvConfig::default(),
            b',',
            FileCompressionType::UNCOMPRESSED,
            100_000,
        )
        .await
        .unwrap()
        .unwrap();
        let types: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Utf8,
                DataType::Float64,
                DataType::Float64,
                DataType::Utf8
            ]
        );
    }
}
