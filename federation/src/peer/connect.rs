//! The channel to a peer, plain or TLS, and the Flight client over it.

use std::time::Duration;

use arrow_flight::FlightClient;
use arrow_flight::flight_service_client::FlightServiceClient;
use polder_flight_sql::{COMPRESSION_HEADER, IpcCompression};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::Peer;
use crate::config::{FederationOptions, PeerUrl};
use crate::error::PeerError;

/// A lazily connecting channel to `url` for the peer named `peer`: TLS with the system's roots
/// and the federation's own CA when the URL asks for it.
pub(super) fn channel_to(
    peer: &str,
    url: &PeerUrl,
    options: &FederationOptions,
) -> Result<Channel, PeerError> {
    let bad = |detail: &dyn std::fmt::Display| PeerError::Config {
        peer: peer.to_string(),
        detail: detail.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(url.endpoint().to_string()).map_err(|e| bad(&e))?;
    if url.tls() {
        endpoint = endpoint
            .tls_config(tls_config(options).map_err(|e| bad(&e))?)
            .map_err(|e| bad(&format!("TLS: {e}")))?;
    }
    Ok(polder_flight_sql::service::bulk_endpoint(endpoint)
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(options.peer_timeout)
        .connect_lazy())
}

/// The system's roots, and the federation's own CA when it has one; `Err` names the CA file
/// that cannot be read.
fn tls_config(options: &FederationOptions) -> Result<ClientTlsConfig, CaFileError> {
    let config = ClientTlsConfig::new().with_native_roots();
    let Some(path) = &options.tls_ca else {
        return Ok(config);
    };
    let pem = std::fs::read(path).map_err(|source| CaFileError {
        path: path.clone(),
        source,
    })?;
    Ok(config.ca_certificate(Certificate::from_pem(pem)))
}

/// The federation's CA file cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the TLS CA file {}: {source}", path.display())]
struct CaFileError {
    path: std::path::PathBuf,
    source: std::io::Error,
}

impl Peer {
    /// A Flight client over `channel`, with the message limits and bearer token in force.
    pub(super) fn client(&self, channel: Channel) -> FlightClient {
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(self.options.max_message_bytes)
            .max_encoding_message_size(self.options.max_message_bytes);
        let mut client = FlightClient::new_from_inner(inner);
        if let Some(token) = &self.options.bearer_token
            && let Err(err) = client.add_header("authorization", &format!("Bearer {}", token.0))
        {
            // Only a token with characters a header cannot carry gets here; the peer then
            // answers Unauthenticated, which names the peer.
            tracing::warn!(peer = %self.config.name, error = %err, "bearer token not sent");
        }
        // The trace context of the remote part's span (W3C traceparent), so the peer's spans
        // join the query's trace.
        for (name, value) in polder_flight_sql::telemetry::trace_headers() {
            let _ = client.add_header(&name, &value);
        }
        let compression = self.compression();
        if compression != IpcCompression::None {
            // Always a valid header value: one of three fixed words.
            let _ = client.add_header(COMPRESSION_HEADER, compression.as_str());
        }
        client
    }

    /// The compression asked of this peer for results: its own setting, else the federation's.
    pub fn compression(&self) -> IpcCompression {
        self.config.compression.unwrap_or(self.options.compression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PeerConfig;

    fn peer(own: Option<IpcCompression>, federation: IpcCompression) -> Peer {
        let mut config = PeerConfig::parse_flag("utrecht=grpc://127.0.0.1:1").unwrap();
        config.compression = own;
        let options = FederationOptions {
            compression: federation,
            ..FederationOptions::default()
        };
        Peer::new(config, options).unwrap()
    }

    /// The header asking for compression goes with every request to a peer that is to
    /// compress, the peer's own setting first; none is sent otherwise.
    #[tokio::test]
    async fn asks_peers_for_the_configured_compression() {
        let header = |peer: &Peer| {
            let client = peer.client(peer.channel.clone());
            client
                .metadata()
                .get(COMPRESSION_HEADER)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(header(&peer(None, IpcCompression::None)), None);
        assert_eq!(
            header(&peer(None, IpcCompression::Zstd)).as_deref(),
            Some("zstd")
        );
        assert_eq!(
            header(&peer(Some(IpcCompression::Lz4), IpcCompression::Zstd)).as_deref(),
            Some("lz4")
        );
        assert_eq!(
            header(&peer(Some(IpcCompression::None), IpcCompression::Zstd)),
            None
        );
    }
}
