//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while generating or writing sample data.
///
/// Variants are grouped by who is at fault: the caller ([`Error::UnknownCity`]), the file
/// system ([`Error::Io`]) or this crate itself ([`Error::Arrow`], [`Error::Parquet`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for a city this crate has no data for. See [`crate::CITIES`].
    #[error("unknown sample city {name:?}; known cities are amsterdam, utrecht and rotterdam")]
    UnknownCity {
        /// The name that was asked for.
        name: String,
    },
    /// Creating the output directory or writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The directory or file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Building a record batch failed; a bug in this crate.
    #[error("internal error building a record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Encoding Parquet failed; a bug in this crate.
    #[error("internal error encoding Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}
