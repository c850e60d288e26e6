//! Transport tuning: message size limits, HTTP/2 windows and frames for bulk results, on the
//! server ([`PolderFlightSqlService::transport`]) and on clients ([`bulk_endpoint`]).

use arrow_flight::flight_service_server::FlightServiceServer;
use tower_layer::{Identity, Stack};

use super::PolderFlightSqlService;
use crate::wire::{CheckedCommands, OversizeStatus};

/// HTTP/2 flow-control window per stream.
pub const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// HTTP/2 flow-control window per connection.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 frame this side accepts.
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// A gRPC client endpoint tuned for bulk results, as [`PolderFlightSqlService::transport`] is
/// on the server: the peer sends frames no larger than the receiver accepts (16 KiB by the
/// protocol's default, so a 1 GB result would be 65 000 frames) and stalls whenever the
/// receiver's window is full.
pub fn bulk_endpoint(endpoint: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
    endpoint
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

impl PolderFlightSqlService {
    /// The tonic service with the configured message size limits; commands that do not
    /// decode are refused before the service sees them ([`CheckedCommands`]).
    pub fn into_server(self) -> FlightServiceServer<CheckedCommands<Self>> {
        let max = self.config.max_message_bytes;
        FlightServiceServer::new(CheckedCommands(self))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// A gRPC server tuned for bulk results: HTTP/2 windows sized for streaming many MiB per
    /// second (the 64 KiB protocol default stalls a stream on every window update) and no
    /// Nagle delay on small metadata replies.
    /// A message over the size limit is refused as `RESOURCE_EXHAUSTED` ([`OversizeStatus`]).
    pub fn transport() -> tonic::transport::Server<Stack<OversizeStatus, Identity>> {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
            .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES))
            .layer(OversizeStatus)
    }
}
