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
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use polder_flight_sql::IpcCompression;
use serde::Deserialize;

use crate::error::PeerError;

/// One peer: a Flight SQL server and the name it has in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The SQL catalog the peer's tables appear under, e.g. `utrecht`.
    pub name: String,
    /// The peer's Flight SQL endpoint, `grpc://host:port` (or `http://host:port`).
    pub url: PeerUrl,
    /// The catalog on the peer to federate. Default: the catalog named like the peer, else the
    /// peer's only catalog (a Polder node's catalog is its node name).
    #[serde(default)]
    pub catalog: Option<String>,
    /// The Arrow IPC body compression asked of this peer for results (`none`, `lz4`, `zstd`).
    /// Default: `federation.compression`.
    #[serde(default)]
    pub compression: Option<IpcCompression>,
}

/// A peer's Flight SQL URL, parsed once (when the manifest, the node's configuration or a
/// `--peer` flag is read): the endpoint tonic connects to and whether it speaks TLS.
/// `grpc://`, `grpc+tcp://` and `http://` are plain HTTP/2; `grpc+tls://` and `https://` TLS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PeerUrl {
    /// The URL as written, for messages.
    text: String,
    /// `http://host:port` or `https://host:port`.
    endpoint: String,
    tls: bool,
}

impl PeerUrl {
    /// The plain `grpc://` URL of a Flight SQL server listening at `addr`.
    pub fn grpc(addr: SocketAddr) -> Self {
        Self::at(addr, false)
    }

    /// The URL of a Flight SQL server listening at `addr`: `grpc+tls://` when it serves TLS,
    /// else `grpc://`.
    pub fn at(addr: SocketAddr, tls: bool) -> Self {
        let (scheme, http) = if tls {
            ("grpc+tls", "https")
        } else {
            ("grpc", "http")
        };
        Self {
            text: format!("{scheme}://{addr}"),
            endpoint: format!("{http}://{addr}"),
            tls,
        }
    }

    /// The URI tonic connects to: `http://host:port` or `https://host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the peer is reached over TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for PeerUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, UrlError> {
        let parsed = url::Url::parse(text).map_err(|source| UrlError::Invalid {
            url: text.to_string(),
            source,
        })?;
        let host = parsed
            .host_str()
            .ok_or_else(|| UrlError::NoHost(text.to_string()))?;
        let port = parsed
            .port()
            .ok_or_else(|| UrlError::NoPort(text.to_string()))?;
        let tls = match parsed.scheme() {
            "grpc" | "grpc+tcp" | "http" => false,
            "grpc+tls" | "https" => true,
            other => {
                return Err(UrlError::Scheme {
                    url: text.to_string(),
                    scheme: other.to_string(),
                });
            }
        };
        let scheme = if tls { "https" } else { "http" };
        Ok(Self {
            text: text.to_string(),
            endpoint: format!("{scheme}://{host}:{port}"),
            tls,
        })
    }
}

impl TryFrom<String> for PeerUrl {
    type Error = UrlError;

    fn try_from(text: String) -> Result<Self, UrlError> {
        text.parse()
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A peer URL this connector cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("invalid URL '{url}': {source}")]
    Invalid {
        /// The text given.
        url: String,
        /// Why it does not parse.
        source: url::ParseError,
    },
    /// A URL without a host.
    #[error("the URL '{0}' has no host")]
    NoHost(String),
    /// A URL without a port.
    #[error("the URL '{0}' has no port")]
    NoPort(String),
    /// A scheme other than gRPC's.
    #[error(
        "the URL '{url}' has the scheme '{scheme}'; peers are reached with grpc:// or grpc+tls:// URLs"
    )]
    Scheme {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
}

/// A federation manifest, a `--peer` flag or a list of peers that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag without `=`.
    #[error("'{0}' is not NAME=URL")]
    NotNameUrl(String),
    /// A flag ending in `#`.
    #[error("'{0}' has an empty catalog after '#': give NAME=URL#CATALOG or NAME=URL")]
    EmptyCatalog(String),
    /// One peer is invalid (its name, its URL).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// Two peers have one name.
    #[error("the peer name '{0}' is used twice")]
    DuplicateName(String),
    /// The manifest file cannot be read.
    #[error("cannot read federation manifest {}: {source}", path.display())]
    ReadManifest {
        /// The manifest's path.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML of the expected shape.
    #[error("invalid federation manifest {}: {source}", path.display())]
    ParseManifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong with it.
        source: toml::de::Error,
    },
    /// The manifest's peers do not pass [`check_peers`].
    #[error("invalid federation manifest {}: {source}", path.display())]
    InvalidManifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong with its peers.
        source: Box<ConfigError>,
    },
}

impl PeerConfig {
    /// Parses `NAME=URL` or `NAME=URL#CATALOG`, the form of `--peer` and `--node`: `#CATALOG`
    /// names the catalog on the peer to federate (as `catalog` does in a manifest).
    pub fn parse_flag(spec: &str) -> Result<Self, ConfigError> {
        let (name, url) = spec
            .split_once('=')
            .ok_or_else(|| ConfigError::NotNameUrl(spec.to_string()))?;
        let (url, catalog) = match url.split_once('#') {
            Some((_, catalog)) if catalog.trim().is_empty() => {
                return Err(ConfigError::EmptyCatalog(spec.to_string()));
            }
            Some((url, catalog)) => (url, Some(catalog.trim().to_string())),
            None => (url, None),
        };
        let name = name.trim().to_string();
        // The name first: a bad name is reported before a bad URL, as a manifest reports it.
        check_name(&name)?;
        let url = url.trim().parse().map_err(|source| PeerError::Url {
            peer: name.clone(),
            source,
        })?;
        let peer = Self {
            name,
            url,
            catalog,
            compression: None,
        };
        Ok(peer)
    }

    /// Checks the name is a plain SQL identifier (the URL is checked when it is parsed).
    pub fn validate(&self) -> Result<(), PeerError> {
        check_name(&self.name)
    }
}

/// Checks a peer's name is a plain SQL identifier, `[a-z_][a-z0-9_]*`.
fn check_name(name: &str) -> Result<(), PeerError> {
    polder_connectors::identifier::check(name).map_err(|e| PeerError::Config {
        peer: name.to_string(),
        detail: format!("the name {e}"),
    })
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
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let path_buf = || path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadManifest {
            path: path_buf(),
            source,
        })?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|source| ConfigError::ParseManifest {
                path: path_buf(),
                source,
            })?;
        check_peers(&manifest.nodes).map_err(|source| ConfigError::InvalidManifest {
            path: path_buf(),
            source: Box::new(source),
        })?;
        Ok(manifest)
    }
}

/// Checks every peer, and that no two share a name.
pub fn check_peers(peers: &[PeerConfig]) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    for peer in peers {
        peer.validate()?;
        if !names.insert(peer.name.as_str()) {
            return Err(ConfigError::DuplicateName(peer.name.clone()));
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
    pub tls_ca: Option<PathBuf>,
    /// Semi-join reduction: the longest runtime filter, in bytes of SQL, sent with a remote
    /// part that is the probe side of a join (the build side's keys, when few). A longer one is
    /// not sent; 0 sends none.
    pub runtime_filter_max_bytes: usize,
    /// The most distinct keys of a join's build side (per partition) sent as a key list; a
    /// side with more sends no runtime filter. Each
    /// key costs the peer about 10 µs of planning, twice (for `GetFlightInfo` and `DoGet`):
    /// a list pays off when the other side is large.
    pub runtime_filter_keys: usize,
    /// The Arrow IPC body compression asked of peers for results (`none`, `lz4`, `zstd`), unless
    /// a peer's own `compression` says otherwise: worth it on links slower than the peers can
    /// compress (docs/benchmarks.md, Federation over links between cities).
    pub compression: IpcCompression,
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
            compression: IpcCompression::None,
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
        assert_eq!(peer.url.as_str(), "grpc://127.0.0.1:50052");
        assert_eq!(peer.url.endpoint(), "http://127.0.0.1:50052");
        assert!(!peer.url.tls());
        assert_eq!(peer.catalog, None);
        let peer = PeerConfig::parse_flag("city=grpc://127.0.0.1:50052#utrecht").unwrap();
        assert_eq!(peer.url.as_str(), "grpc://127.0.0.1:50052");
        assert_eq!(peer.catalog.as_deref(), Some("utrecht"));
        let tls: PeerUrl = "grpc+tls://node.example.org:443".parse().unwrap();
        assert_eq!(
            (tls.endpoint(), tls.tls()),
            ("https://node.example.org:443", true)
        );
        assert!(matches!(
            "grpc://h".parse::<PeerUrl>(),
            Err(UrlError::NoPort(_))
        ));
        assert!(
            PeerConfig::parse_flag("city=grpc://h:1#")
                .unwrap_err()
                .to_string()
                .contains("empty catalog")
        );
        assert!(
            PeerConfig::parse_flag("utrecht")
                .unwrap_err()
                .to_string()
                .contains("NAME=URL")
        );
        assert!(
            PeerConfig::parse_flag("Utrecht=grpc://h:1")
                .unwrap_err()
                .to_string()
                .contains("lower-case SQL identifier")
        );
        // The node's identifier rule, length cap included: a peer's name is a SQL catalog.
        let longest = "a".repeat(polder_connectors::identifier::MAX_LEN);
        assert!(PeerConfig::parse_flag(&format!("{longest}=grpc://h:1")).is_ok());
        assert!(
            PeerConfig::parse_flag(&format!("{longest}a=grpc://h:1"))
                .unwrap_err()
                .to_string()
                .contains("1-63 characters")
        );
        assert!(
            PeerConfig::parse_flag("u=ftp://h:1")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
    }

    #[test]
    fn refuses_duplicate_names_and_unknown_keys() {
        let peers = vec![
            PeerConfig::parse_flag("a=grpc://h:1").unwrap(),
            PeerConfig::parse_flag("a=grpc://h:2").unwrap(),
        ];
        assert!(matches!(
            check_peers(&peers),
            Err(ConfigError::DuplicateName(name)) if name == "a"
        ));
        let err = toml::from_str::<Manifest>("[[nodes]]\nname='a'\nurl='grpc://h:1'\nport=3")
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `port`"));
        let err = toml::from_str::<Manifest>("[[nodes]]\nname='a'\nurl='ftp://h:1'").unwrap_err();
        assert!(err.to_string().contains("grpc://"), "{err}");
    }
}
