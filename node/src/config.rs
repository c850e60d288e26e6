//! The node's configuration: one TOML file into typed structs, overridden by command-line flags.
//!
//! Every key is documented in `node/config/node.example.toml`, which a test loads.

use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use polder_access::{AuditConfig, AuthConfig};
use polder_catalog::sensors::{Register, RegisterError, SensorConfig};
use polder_catalog::{CatalogConfig, DatasetConfig};
use polder_connectors::FileTableConfig;
use polder_federation::{FederationOptions, PeerConfig};
use serde::Deserialize;

/// Errors in the configuration; each names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file '{path}': {source}")]
    Read {
        /// The config file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type).
    #[error("invalid config file '{path}': {message}")]
    Parse {
        /// The config file.
        path: String,
        /// What is wrong, with the line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole node configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Identity and addresses of the node.
    #[serde(default)]
    pub node: NodeSection,
    /// Limits on requests and resources.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The datasets the node serves.
    #[serde(default)]
    pub tables: Vec<FileTableConfig>,
    /// Catalog-level DCAT metadata, inherited by every dataset. Required once the node
    /// serves tables of its own (without any, it serves the sample data with sample metadata).
    pub catalog: Option<CatalogConfig>,
    /// DCAT metadata of individual tables, by table name.
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetConfig>,
    /// Other nodes (any Flight SQL server) this node federates: each peer's tables are the SQL
    /// catalog named after it, so clients of this node can query the whole federation.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Limits on talking to peers.
    #[serde(default)]
    pub federation: FederationOptions,
    /// Bearer-token authentication and the access policy. Without it the node is open: every
    /// caller reads every dataset.
    pub auth: Option<AuthConfig>,
    /// The audit log of every query (needs `[auth]`).
    pub audit: Option<AuditConfig>,
    /// Where traces and metrics are exported (OTLP); off unless an endpoint is set.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The public sensor register: the sensors the node operates in public space. Published
    /// in the catalog, as the SQL table `sensor_register` and as the page `GET /sensors`.
    #[serde(default)]
    pub sensors: Vec<SensorConfig>,
}

/// Identity and addresses of the node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's name; it is the SQL catalog of its tables (`<name>.public.<table>`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Address of the Arrow Flight SQL service.
    #[serde(default = "default_flight_addr")]
    pub flight_addr: SocketAddr,
    /// Address of the HTTP service (health, readiness).
    #[serde(default = "default_http_addr")]
    pub http_addr: SocketAddr,
    /// The Flight SQL service's TLS certificate chain (PEM); with `tls_key`, the node serves
    /// `grpc+tls://`. Without them it serves plain gRPC (for TLS terminated in front of it).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: default_name(),
            flight_addr: default_flight_addr(),
            http_addr: default_http_addr(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

fn default_name() -> String {
    "amsterdam".into()
}

fn default_flight_addr() -> SocketAddr {
    "127.0.0.1:50051".parse().expect("valid address")
}

fn default_http_addr() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("valid address")
}

/// Limits on requests and resources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest SQL text accepted, in bytes.
    #[serde(default = "default_max_query_bytes")]
    pub max_query_bytes: usize,
    /// Deepest nesting of expressions, subqueries and set operations in a SQL statement
    /// (a chain `a OR b OR c` is three levels deep).
    #[serde(default = "default_max_query_depth")]
    pub max_query_depth: usize,
    /// Longest a query may run, from planning to its last batch (e.g. "5m", "30s").
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Queries running at once; more wait for a slot.
    #[serde(default = "default_max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot before it is refused with ResourceExhausted.
    #[serde(default = "default_queue_timeout", with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Memory all running queries may use together, in MiB; beyond it operators spill to
    /// disk or the query fails with ResourceExhausted.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: usize,
    /// Largest gRPC message accepted from or sent to a client, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Target size of one result message (FlightData) sent to clients, in bytes.
    #[serde(default = "default_max_flight_data_bytes")]
    pub max_flight_data_bytes: usize,
    /// Most parameter rows bound to one prepared statement.
    #[serde(default = "default_max_parameter_rows")]
    pub max_parameter_rows: usize,
    /// Largest GeoJSON file loaded (GeoJSON is read into memory at startup), in bytes.
    #[serde(default = "default_max_geojson_bytes")]
    pub max_geojson_bytes: u64,
    /// Longest the startup scan of one table for its catalog facts (row count, temporal
    /// coverage) may take; beyond it the facts are left out of the catalog.
    #[serde(default = "default_catalog_scan_timeout", with = "humantime_serde")]
    pub catalog_scan_timeout: Duration,
    /// Longest SPARQL query text accepted, in bytes.
    #[serde(default = "default_sparql_max_query_bytes")]
    pub sparql_max_query_bytes: usize,
    /// Longest a SPARQL query may run.
    #[serde(default = "default_sparql_timeout", with = "humantime_serde")]
    pub sparql_timeout: Duration,
    /// Most solutions or triples in one SPARQL result; a larger result is refused.
    #[serde(default = "default_sparql_max_results")]
    pub sparql_max_results: usize,
    /// SPARQL queries evaluated at once; more wait up to queue_timeout, then get 429.
    #[serde(default = "default_sparql_max_concurrent")]
    pub sparql_max_concurrent: usize,
    /// Memory one SPARQL query may use, in MiB (the address space of its worker process).
    #[serde(default = "default_sparql_memory_limit_mib")]
    pub sparql_memory_limit_mib: usize,
    /// Deepest nesting of a SPARQL query: brackets, and chains of operators, OPTIONAL, UNION,
    /// FILTER and BIND, each link a level; deeper queries are refused before they are parsed.
    #[serde(default = "default_sparql_max_depth")]
    pub sparql_max_depth: usize,
    /// Largest serialised SPARQL result, in bytes; a larger result is refused.
    #[serde(default = "default_sparql_max_result_bytes")]
    pub sparql_max_result_bytes: usize,
    /// Flight SQL connections open at once; a connection beyond it is closed at once. Default:
    /// derived from the descriptor limit (RLIMIT_NOFILE) at startup, below it.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// HTTP connections open at once, a budget of their own, so that `/healthz` answers when
    /// Flight SQL's is used up. Default: derived from the descriptor limit, below it.
    #[serde(default)]
    pub http_max_connections: Option<usize>,
    /// How long a new connection (either service) may take to send its first request (TLS and
    /// HTTP/2 handshakes included) before it is closed.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How long a Flight SQL connection may stay open without a request in progress.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long an HTTP connection may stay open without a request in progress (keep-alive).
    #[serde(default = "default_http_idle_timeout", with = "humantime_serde")]
    pub http_idle_timeout: Duration,
    /// After SIGTERM or SIGINT, how long in-flight requests (a result being streamed) may run
    /// to their end before the node exits anyway.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// Below Kubernetes' default termination grace period (30 s), after which the pod is killed.
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(25)
}
fn default_max_query_bytes() -> usize {
    polder_flight_sql::QueryLimits::default().max_query_bytes
}
fn default_max_query_depth() -> usize {
    polder_flight_sql::QueryLimits::default().max_query_depth
}
fn default_query_timeout() -> Duration {
    polder_flight_sql::QueryLimits::default().timeout
}
fn default_max_concurrent_queries() -> usize {
    polder_flight_sql::QueryLimits::default().max_concurrent
}
fn default_queue_timeout() -> Duration {
    polder_flight_sql::QueryLimits::default().queue_timeout
}
fn default_memory_limit_mib() -> usize {
    4096
}
fn default_max_message_bytes() -> usize {
    polder_flight_sql::FlightSqlConfig::default().max_message_bytes
}
fn default_max_flight_data_bytes() -> usize {
    polder_flight_sql::FlightSqlConfig::default().max_flight_data_bytes
}
fn default_max_parameter_rows() -> usize {
    polder_flight_sql::QueryLimits::default().max_parameter_rows
}
fn default_max_geojson_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_catalog_scan_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_sparql_max_query_bytes() -> usize {
    64 * 1024
}
fn default_sparql_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_sparql_max_results() -> usize {
    10_000
}
fn default_sparql_max_concurrent() -> usize {
    4
}
fn default_sparql_memory_limit_mib() -> usize {
    1024
}
fn default_sparql_max_depth() -> usize {
    128
}
fn default_sparql_max_result_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_http_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

impl LimitsConfig {
    /// The connection budgets (Flight SQL, HTTP): as configured, else derived from the
    /// descriptor limit `nofile` (see [`crate::connections::default_budgets`]).
    pub fn connection_budgets(&self, nofile: u64) -> (usize, usize) {
        let (flight, http) = crate::connections::default_budgets(nofile);
        (
            self.max_connections.unwrap_or(flight),
            self.http_max_connections.unwrap_or(http),
        )
    }
}

impl NodeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        // Relative local locations are relative to the config file, so a config works from
        // any working directory.
        if let Some(dir) = path.parent() {
            for table in &mut config.tables {
                table.location = resolve_relative(dir, &table.location);
            }
            if let Some(audit) = &mut config.audit {
                audit.log = dir.join(&audit.log);
                audit.signing_key = dir.join(&audit.signing_key);
            }
            for file in [&mut config.node.tls_cert, &mut config.node.tls_key]
                .into_iter()
                .chain([&mut config.federation.tls_ca])
                .flatten()
            {
                *file = dir.join(&*file);
            }
            if let Some(auth) = &mut config.auth {
                auth.jwks = resolve_relative(dir, &auth.jwks);
                if let Some(policy) = &mut auth.policy {
                    *policy = dir.join(&*policy);
                }
            }
        }
        Ok(config)
    }

    /// Adds or replaces a table given as `NAME=LOCATION`.
    pub fn set_table(&mut self, spec: &str) -> Result<(), ConfigError> {
        let (name, location) = spec.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("--table '{spec}' is not of the form NAME=LOCATION"))
        })?;
        let table = FileTableConfig::new(name.trim(), location.trim());
        match self.tables.iter_mut().find(|t| t.name == table.name) {
            Some(existing) => *existing = table,
            None => self.tables.push(table),
        }
        Ok(())
    }

    /// The checked sensor register; its entries may name any of the node's tables.
    pub fn register(&self) -> Result<Register, RegisterError> {
        let tables: Vec<String> = self.tables.iter().map(|t| t.name.clone()).collect();
        Register::resolve(&self.sensors, &tables)
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_identifier("node name", &self.node.name)?;
        if self.node.tls_cert.is_some() != self.node.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "node.tls_cert and node.tls_key go together: give both to serve TLS, or neither"
                    .into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for table in &self.tables {
            check_identifier("table name", &table.name)?;
            if !seen.insert(table.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "table '{}' is configured twice",
                    table.name
                )));
            }
            if table.location.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "table '{}' has an empty location",
                    table.name
                )));
            }
        }
        let l = &self.limits;
        for (what, value) in [
            ("limits.max_query_bytes", l.max_query_bytes),
            ("limits.max_query_depth", l.max_query_depth),
            ("limits.max_concurrent_queries", l.max_concurrent_queries),
            ("limits.memory_limit_mib", l.memory_limit_mib),
            ("limits.max_message_bytes", l.max_message_bytes),
            ("limits.max_flight_data_bytes", l.max_flight_data_bytes),
            ("limits.sparql_max_query_bytes", l.sparql_max_query_bytes),
            ("limits.sparql_max_results", l.sparql_max_results),
            ("limits.sparql_max_concurrent", l.sparql_max_concurrent),
            ("limits.sparql_memory_limit_mib", l.sparql_memory_limit_mib),
            ("limits.sparql_max_depth", l.sparql_max_depth),
            ("limits.sparql_max_result_bytes", l.sparql_max_result_bytes),
            (
                "limits.max_connections",
                l.max_connections.unwrap_or(usize::MAX),
            ),
            (
                "limits.http_max_connections",
                l.http_max_connections.unwrap_or(usize::MAX),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{what} must be greater than 0"
                )));
            }
        }
        for (what, value) in [
            ("limits.query_timeout", l.query_timeout),
            ("limits.sparql_timeout", l.sparql_timeout),
            ("limits.catalog_scan_timeout", l.catalog_scan_timeout),
            ("limits.handshake_timeout", l.handshake_timeout),
            ("limits.idle_timeout", l.idle_timeout),
            ("limits.http_idle_timeout", l.http_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "{what} must be greater than 0"
                )));
            }
        }
        // tokio's semaphore counts permits up to usize::MAX >> 3.
        for (what, value) in [
            ("limits.max_connections", l.max_connections),
            ("limits.http_max_connections", l.http_max_connections),
        ] {
            if value.is_some_and(|v| v > 1 << 24) {
                return Err(ConfigError::Invalid(format!(
                    "{what} must be at most 16777216"
                )));
            }
        }
        if l.max_flight_data_bytes > l.max_message_bytes {
            return Err(ConfigError::Invalid(
                "limits.max_flight_data_bytes must not exceed limits.max_message_bytes".into(),
            ));
        }
        polder_federation::config::check_peers(&self.peers)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(peer) = self.peers.iter().find(|p| p.name == self.node.name) {
            return Err(ConfigError::Invalid(format!(
                "the peer '{}' has the name of this node",
                peer.name
            )));
        }
        let f = &self.federation;
        for (what, value) in [
            ("federation.connect_timeout", f.connect_timeout),
            ("federation.peer_timeout", f.peer_timeout),
            ("federation.refresh_interval", f.refresh_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "{what} must be greater than 0"
                )));
            }
        }
        if f.max_message_bytes == 0 {
            return Err(ConfigError::Invalid(
                "federation.max_message_bytes must be greater than 0".into(),
            ));
        }
        if let Some(auth) = &self.auth {
            auth.validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(audit) = &self.audit {
            if self.auth.is_none() {
                return Err(ConfigError::Invalid(
                    "[audit] records who asked: it needs [auth] (or --jwks, --issuer, --audience)"
                        .into(),
                ));
            }
            audit
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}

/// Names become SQL identifiers, checked by the one rule ([`polder_connectors::identifier`]).
fn check_identifier(what: &str, name: &str) -> Result<(), ConfigError> {
    polder_connectors::identifier::check(name)
        .map_err(|e| ConfigError::Invalid(format!("{what} {e}")))
}

fn resolve_relative(dir: &Path, location: &str) -> String {
    if location.contains("://") || Path::new(location).is_absolute() {
        return location.to_string();
    }
    dir.join(location).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node.example.toml");
        let config = NodeConfig::load(&path).unwrap();
        config.validate().unwrap();
        assert!(!config.tables.is_empty());
        assert_eq!(config.limits.query_timeout, Duration::from_secs(300));
        // The example is a complete municipality: its catalog metadata resolves, and every
        // [datasets.<table>] names a table it serves.
        let names: Vec<String> = config.tables.iter().map(|t| t.name.clone()).collect();
        let catalog = config
            .catalog
            .as_ref()
            .expect("the example has a [catalog]");
        catalog.resolve(&config.datasets, &names).unwrap();
        assert_eq!(config.datasets.len(), names.len());
    }

    #[test]
    fn config_reference_lists_every_key_of_the_example() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = std::fs::read_to_string(root.join("config/node.example.toml")).unwrap();
        let reference = std::fs::read_to_string(root.join("../docs/config-reference.md")).unwrap();
        // Keys under [datasets] and [datasets.<table>.columns] are names of tables and
        // columns, not configuration keys.
        fn keys(value: &toml::Value, parent: &str, out: &mut Vec<String>) {
            match value {
                toml::Value::Table(table) => {
                    for (key, value) in table {
                        if parent == "datasets" || parent == "columns" {
                            keys(value, "", out);
                        } else {
                            out.push(key.clone());
                            keys(value, key, out);
                        }
                    }
                }
                toml::Value::Array(items) => items.iter().for_each(|v| keys(v, parent, out)),
                _ => {}
            }
        }
        let mut all = vec![];
        keys(&toml::from_str(&example).unwrap(), "", &mut all);
        for key in all {
            let listed = reference.contains(&format!("`{key}`"))
                || reference.contains(&format!("{key}]`"))
                || reference.contains(&format!("{key}]]`"));
            assert!(listed, "docs/config-reference.md lacks `{key}`");
        }
    }

    #[test]
    fn auth_section_is_typed_and_bounded() {
        let text = "[auth]\njwks = 'keys/jwks.json'\nissuer = 'https://idp'\naudience = 'utrecht'\npolicy = 'policy.toml'\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        let config = NodeConfig::load(&path).unwrap();
        let auth = config.auth.as_ref().unwrap();
        // Files named in [auth] are relative to the config file, like table locations.
        assert_eq!(
            auth.jwks,
            dir.path().join("keys/jwks.json").display().to_string()
        );
        assert_eq!(
            auth.policy.as_deref(),
            Some(dir.path().join("policy.toml").as_path())
        );
        assert_eq!(auth.leeway, Duration::from_secs(30));
        config.validate().unwrap();

        let lax = format!("{text}leeway = '5m'\n");
        let config: NodeConfig = toml::from_str(&lax).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("auth.leeway"), "{err}");
        let err = toml::from_str::<NodeConfig>(&format!("{text}algorithm = 'HS256'\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("algorithm"), "{err}");
        let err = toml::from_str::<NodeConfig>("[auth]\njwks = 'x'\nissuer = 'y'\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("audience"), "{err}");
    }

    #[test]
    fn unknown_keys_fail_with_their_name() {
        let err = toml::from_str::<NodeConfig>("[node]\nnmae = 'x'").unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
        let err = toml::from_str::<NodeConfig>("[limits]\nquery_timeout = 'soon'").unwrap_err();
        assert!(err.to_string().contains("query_timeout"), "{err}");
    }

    #[test]
    fn table_flags_add_and_replace() {
        let mut config = NodeConfig::default();
        config.set_table("a=/data/a.csv").unwrap();
        config.set_table("a=/data/b.csv").unwrap();
        assert_eq!(config.tables.len(), 1);
        assert_eq!(config.tables[0].location, "/data/b.csv");
        assert!(config.set_table("nolocation").is_err());
    }

    #[test]
    fn names_must_be_plain_identifiers() {
        let mut config = NodeConfig::default();
        config.node.name = "Den Haag".into();
        assert!(config.validate().is_err());
        config.node.name = "den_haag".into();
        config.validate().unwrap();
        config.node.name = "a".repeat(polder_connectors::identifier::MAX_LEN);
        config.validate().unwrap();
        config.node.name.push('a');
        assert!(config.validate().is_err(), "a name over the cap");
        config.node.name = "den_haag".into();
        config.set_table("1bad=/x.csv").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn relative_locations_follow_the_config_file() {
        assert_eq!(
            resolve_relative(Path::new("/etc/polder"), "data/a.csv"),
            "/etc/polder/data/a.csv"
        );
        assert_eq!(
            resolve_relative(Path::new("/etc/polder"), "s3://b/a.csv"),
            "s3://b/a.csv"
        );
    }
}
