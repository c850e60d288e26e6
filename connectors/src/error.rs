//! Errors of the connectors, each naming the dataset and location it concerns.

/// A dataset could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration of the dataset is wrong (bad location, unknown format, bad option).
    #[error("dataset '{table}': {message}")]
    InvalidConfig {
        /// The table name.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// The data at the location could not be found or read.
    #[error("dataset '{table}' at '{location}': {message}")]
    Unreadable {
        /// The table name.
        table: String,
        /// The configured location.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// The data at the location is malformed.
    #[error("dataset '{table}' at '{location}' is malformed: {message}")]
    Malformed {
        /// The table name.
        table: String,
        /// The configured location.
        location: String,
        /// What is malformed.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
