//! The peers of a federation and the limits on talking to them.
//!
//! A federation manifest lists nodes by name and Flight SQL URL:
//!
//! ```toml
//! [[nodes]]
//! name = "utrecht"
//! url = "grpc://utrecht.example.org:50051"
//!
//! [[nodes]]
//! name = "rotterdam"
//! url = "grpc://rotterdam.example.org:50051"
//! catalog = "rdam"   # the peer's own catalog, when it is not named like the node
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::PeerError;

/// One peer: a Flight SQL server and the name it has in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The SQL catalog the peer's tables appear under, e.g. `utrecht`.
    pub name: String,
    /// The peer's Flight SQL endpoint, `grpc://host:port` (or `http://host:port`).
    pub url: String,
    /// The catalog on the peer to federate. Default: the catalog named like the peer, else the
    /// peer's only catalog (a Polder node's catalog is its node name).
    #[serde(default)]
    pub catalog: Option<String>,
}

impl PeerConfig {
    /// Parses `NAME=URL` or `NAME=URL#CATALOG`, the form of `--peer` and `--node`: `#CATALOG`
    /// names the catalog on the peer to federate (as `catalog` does in a manifest).
    pub fn parse_flag(spec: &str) -> Result<Self, String> {
        let (name, url) = spec
            .split_once('=')
            .ok_or_else(|| format!("'{spec}' is not NAME=URL"))?;
        let (url, catalog) = match url.split_once('#') {
            Some((_, catalog)) if catalog.trim().is_empty() => {
                return Err(format!(
                    "'{spec}' has an empty catalog after '#': give NAME=URL#CATALOG or NAME=URL"
                ));
            }
            Some((url, catalog)) => (url, Some(catalog.trim().to_string())),
            None => (url, None),
        };
        let peer = Self {
            name: name.trim().to_string(),
            url: url.trim().to_string(),
            catalog,
        };
        peer.validate().map_err(|e| e.to_string())?;
        Ok(peer)
    }

    /// Checks the name is a plain SQL identifier and the URL one this connector speaks.
    pub fn validate(&self) -> Result<(), PeerError> {
        let bad = |detail: String| PeerError::Config {
            peer: self.name.clone(),
            detail,
        };
        polder_connectors::identifier::check(&self.name)
            .map_err(|e| bad(format!("the name {e}")))?;
        crate::peer::endpoint_uri(&self.url).map_err(bad)?;
        Ok(())
    }
}

/// A federation manifest: the nodes an analyst (or a coordinating node) queries together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The nodes, each a peer.
    #[serde(default)]
    pub nodes: Vec<PeerConfig>,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read federation manifest {}: {e}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|e| format!("invalid federation manifest {}: {e}", path.display()))?;
        check_peers(&manifest.nodes)
            .map_err(|e| format!("invalid federation manifest {}: {e}", path.display()))?;
        Ok(manifest)
    }
}

/// Checks every peer, and that no two share a name.
pub fn check_peers(peers: &[PeerConfig]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for peer in peers {
        peer.validate().map_err(|e| e.to_string())?;
        if !names.insert(peer.name.as_str()) {
            return Err(format!("the peer name '{}' is used twice", peer.name));
        }
    }
    Ok(())
}

/// Limits on talking to peers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationOptions {
    /// How long a connection to a peer may take to open.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a peer may take to answer a request, and to send each next batch of a result.
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// How often each peer's tables and schemas are discovered again: the bound on how stale
    /// the local view of a peer may be.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// The largest gRPC message accepted from a peer, in bytes.
    pub max_message_bytes: usize,
    /// Push work to peers. Off, every remote table is scanned whole (all rows, all columns)
    /// and the query runs here: only for measuring what pushdown gains.
    pub pushdown: bool,
    /// A bearer token sent to every peer (`polder sql --token`); never read from a file.
    #[serde(skip)]
    pub bearer_token: Option<BearerToken>,
    /// Certificate authorities (a PEM file) trusted for peers reached with `grpc+tls://`, in
    /// addition to the system's.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Semi-join reduction: the longest runtime filter, in bytes of SQL, sent with a remote
    /// part that is the probe side of a join (the build side's keys, when few). A longer one is
    /// not sent; 0 sends none.
    pub runtime_filter_max_bytes: usize,
    /// The most distinct keys of a join's build side (per partition) sent as a key list; a
    /// side with more sends no runtime filter. Each
    /// key costs the peer about 10 µs of planning, twice (for `GetFlightInfo` and `DoGet`):
    /// a list pays off when the other side is large.
    pub runtime_filter_keys: usize,
}

/// A bearer token: a credential, so never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(pub String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl Default for FederationOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(60),
            max_message_bytes: 64 * 1024 * 1024,
            pushdown: true,
            bearer_token: None,
            tls_ca: None,
            runtime_filter_max_bytes: 64 * 1024,
            runtime_filter_keys: 150,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peer_flags() {
        let peer = PeerConfig::parse_flag("utrecht=grpc://127.0.0.1:50052").unwrap();
        assert_eq!(peer.name, "utrecht");
        assert_eq!(peer.url, "grpc://127.0.0.1:50052");
        assert_eq!(peer.catalog, None);
        let peer = PeerConfig::parse_flag("city=grpc://127.0.0.1:50052#utrecht").unwrap();
        assert_eq!(peer.url, "grpc://127.0.0.1:50052");
        assert_eq!(peer.catalog.as_deref(), Some("utrecht"));
        assert!(
            PeerConfig::parse_flag("city=grpc://h:1#")
                .unwrap_err()
                .contains("empty catalog")
        );
        assert!(
            PeerConfig::parse_flag("utrecht")
                .unwrap_err()
                .contains("NAME=URL")
        );
        assert!(
            PeerConfig::parse_flag("Utrecht=grpc://h:1")
                .unwrap_err()
                .contains("lower-case SQL identifier")
        );
        assert!(
            PeerConfig::parse_flag("u=ftp://h:1")
                .unwrap_err()
                .contains("scheme")
        );
    }

    #[test]
    fn refuses_duplicate_names_and_unknown_keys() {
        let peers = vec![
            PeerConfig::parse_flag("a=grpc://h:1").unwrap(),
            PeerConfig::parse_flag("a=grpc://h:2").unwrap(),
        ];
        assert!(check_peers(&peers).unwrap_err().contains("used twice"));
        let err = toml::from_str::<Manifest>("[[nodes]]\nname='a'\nurl='grpc://h:1'\nport=3")
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `port`"));
    }
}
