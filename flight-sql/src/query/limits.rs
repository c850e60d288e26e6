//! The limits on what one query may use, and their defaults (the node's configuration
//! defaults are these).

use std::time::Duration;

/// Limits on what one query may use.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Longest SQL text accepted, in bytes.
    pub max_query_bytes: usize,
    /// Wall-clock time from planning to the last batch.
    pub timeout: Duration,
    /// Queries running at once; further queries wait up to `queue_timeout` for a slot.
    pub max_concurrent: usize,
    /// How long a query waits for a slot before it is refused.
    pub queue_timeout: Duration,
    /// Most parameter rows bound to one prepared statement.
    pub max_parameter_rows: usize,
    /// Deepest nesting of expressions, subqueries and set operations in a statement (see
    /// [`crate::depth`]).
    pub max_query_depth: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_query_bytes: 256 * 1024,
            timeout: Duration::from_secs(300),
            max_concurrent: 16,
            queue_timeout: Duration::from_secs(30),
            max_parameter_rows: 10_000,
            max_query_depth: 256,
        }
    }
}
