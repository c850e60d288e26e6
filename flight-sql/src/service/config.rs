//! The settings of the Flight SQL service and their defaults (the node's configuration
//! defaults are these).

use crate::metadata::ServerInfo;
use crate::query::QueryLimits;

/// Settings of the Flight SQL service.
#[derive(Debug, Clone)]
pub struct FlightSqlConfig {
    /// What the server says about itself in `GetSqlInfo`.
    pub server: ServerInfo,
    /// Limits on each query.
    pub limits: QueryLimits,
    /// Target size of one `FlightData` message sent to clients.
    pub max_flight_data_bytes: usize,
    /// Largest gRPC message accepted from or sent to a client.
    pub max_message_bytes: usize,
    /// Prepared statements whose bound parameters are remembered for clients that ignore the
    /// updated handle returned by `DoPut`.
    pub remembered_bindings: usize,
}

impl Default for FlightSqlConfig {
    fn default() -> Self {
        let limits = QueryLimits::default();
        Self {
            server: ServerInfo::new(&limits),
            limits,
            max_flight_data_bytes: 2 * 1024 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            remembered_bindings: 1024,
        }
    }
}
