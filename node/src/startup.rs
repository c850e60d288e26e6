//! Starting a node: configuration, datasets, the Flight SQL and HTTP services, shutdown.

use std::sync::Arc;

use anyhow::Context;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;
use polder_connectors::GeoJsonOptions;
use polder_flight_sql::{
    FlightSqlConfig, PolderFlightSqlService, QueryEngine, QueryLimits, QueryRuntime, ServerInfo,
};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use polder_access::{
    AuditConfig, AuditLog, AuthConfig, AuthInterceptor, Authenticator, Policy, PolicySessions,
};
use polder_federation::{FederatedSession, Manifest, PeerConfig, PeerUrl};
use tracing::{info, warn};

use crate::cli::ServeArgs;
use crate::config::NodeConfig;
use crate::connections::{Activity, Connections, Limited, Timeouts, TrackRequests};
use crate::datasets::{self, SampleFiles, SharedReadiness};
use crate::telemetry::{HttpTelemetry, RpcTelemetry};

/// Builds the effective configuration from the file and the flags. Without datasets, the
/// node serves the sample data, described by sample catalog metadata unless the config has
/// its own `[catalog]`.
pub fn effective_config(args: &ServeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    if let Some(name) = &args.name {
        config.node.name = name.clone();
    }
    if let Some(addr) = args.flight {
        config.node.flight_addr = addr;
    }
    if let Some(addr) = args.http {
        config.node.http_addr = addr;
    }
    for spec in &args.tables {
        config.set_table(spec)?;
    }
    if let Some(path) = &args.federation {
        let manifest = Manifest::load(path).map_err(anyhow::Error::msg)?;
        for peer in manifest.nodes {
            if peer.name != config.node.name {
                set_peer(&mut config.peers, peer);
            }
        }
    }
    for spec in &args.peers {
        let peer =
            PeerConfig::parse_flag(spec).map_err(|e| anyhow::anyhow!("invalid --peer: {e}"))?;
        set_peer(&mut config.peers, peer);
    }
    if let Some(cert) = &args.tls_cert {
        config.node.tls_cert = Some(cert.clone());
    }
    if let Some(key) = &args.tls_key {
        config.node.tls_key = Some(key.clone());
    }
    if let Some(ca) = &args.peer_tls_ca {
        config.federation.tls_ca = Some(ca.clone());
    }
    apply_auth_flags(&mut config, args)?;
    complete(config)
}

/// `--jwks`, `--issuer`, `--audience` and `--policy` override `[auth]`; without an `[auth]` in
/// the file, the first three together set it up.
fn apply_auth_flags(config: &mut NodeConfig, args: &ServeArgs) -> anyhow::Result<()> {
    let any = args.jwks.is_some() || args.issuer.is_some() || args.audience.is_some();
    if config.auth.is_none() {
        if !any {
            if args.policy.is_some() || args.audit_log.is_some() {
                anyhow::bail!(
                    "--policy and --audit-log need authentication: give --jwks, --issuer and --audience (or [auth] in the config)"
                );
            }
            return Ok(());
        }
        match (&args.jwks, &args.issuer, &args.audience) {
            (Some(jwks), Some(issuer), Some(audience)) => {
                config.auth = Some(AuthConfig::new(
                    jwks.clone(),
                    issuer.clone(),
                    audience.clone(),
                ));
            }
            _ => anyhow::bail!(
                "authentication needs all of --jwks, --issuer and --audience (or [auth] in the config)"
            ),
        }
    }
    let auth = config.auth.as_mut().expect("set above");
    if let Some(jwks) = &args.jwks {
        auth.jwks = jwks.clone();
    }
    if let Some(issuer) = &args.issuer {
        auth.issuer = issuer.clone();
    }
    if let Some(audience) = &args.audience {
        auth.audience = audience.clone();
    }
    if let Some(policy) = &args.policy {
        auth.policy = Some(policy.clone());
    }
    if let (Some(log), Some(key)) = (&args.audit_log, &args.audit_key) {
        config.audit = Some(AuditConfig::new(log.clone(), key.clone()));
    }
    Ok(())
}

/// A peer given again (on the command line after the file) replaces the earlier one.
pub fn set_peer(peers: &mut Vec<PeerConfig>, peer: PeerConfig) {
    match peers.iter_mut().find(|p| p.name == peer.name) {
        Some(existing) => *existing = peer,
        None => peers.push(peer),
    }
}

/// Fills in the sample data when no datasets are configured, validates, and checks the catalog
/// metadata before anything starts.
pub fn complete(mut config: NodeConfig) -> anyhow::Result<NodeConfig> {
    let mut sample_metadata = false;
    if config.tables.is_empty() {
        let city = if polder_sample_data::is_city(&config.node.name) {
            config.node.name.clone()
        } else {
            polder_sample_data::CITIES[0].to_string()
        };
        info!(
            city,
            "no datasets configured: serving the generated sample data"
        );
        config.tables = datasets::sample_tables(&city);
        if config.sensors.is_empty() {
            config.sensors = datasets::sample_sensors(&city)?;
        }
        if config.catalog.is_none() {
            let (catalog, datasets) = crate::catalog::sample_metadata(&city);
            config.catalog = Some(catalog);
            config.datasets = datasets;
            sample_metadata = true;
        }
    }
    config.validate()?;
    datasets::add_register_table(&mut config)?;
    // Catalog metadata is checked before anything starts, naming every missing field; the
    // base URL may still be derived from the HTTP address (sample metadata only).
    let mut catalog = config.catalog.clone().unwrap_or_default();
    if sample_metadata {
        catalog.base_url = Some(format!("http://{}", config.node.http_addr));
    }
    let names: Vec<String> = config.tables.iter().map(|t| t.name.clone()).collect();
    catalog.resolve(&config.datasets, &names)?;
    Ok(config)
}

/// The DataFusion session of a node: its catalog is the node's name, memory is bounded
/// (operators by the memory pool, scalar functions by [`polder_flight_sql::bounded`]).
pub fn session(config: &NodeConfig) -> anyhow::Result<SessionContext> {
    let session_config = polder_flight_sql::session_config()
        .with_default_catalog_and_schema(&config.node.name, datasets::SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(config.limits.memory_limit_mib * 1024 * 1024, 1.0)
        .build_arc()?;
    let state = if config.peers.is_empty() {
        SessionContext::new_with_config_rt(session_config, runtime).state()
    } else {
        polder_federation::session_state(session_config, runtime, &config.federation)
    };
    let state = polder_spatial::register(state);
    // Functions whose output size the caller controls are bounded by the memory limit too.
    Ok(SessionContext::new_with_state(
        polder_flight_sql::bounded::bound_functions(state),
    ))
}

/// A node started in this process.
#[derive(Debug)]
pub struct RunningNode {
    /// The node's name.
    pub name: String,
    /// Where its Flight SQL service listens.
    pub flight_addr: SocketAddr,
    /// Where its HTTP service listens.
    pub http_addr: SocketAddr,
    /// Whether its Flight SQL service speaks TLS.
    pub tls: bool,
    shutdown: tokio::sync::watch::Sender<bool>,
    shutdown_grace: std::time::Duration,
    flight: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    connections: [Connections; 2],
    query_runtime: QueryRuntime,
    samples: SampleFiles,
    _federation: FederatedSession,
}

impl RunningNode {
    /// How a client or another node reaches this node: as a peer named after it.
    pub fn peer_config(&self) -> PeerConfig {
        PeerConfig {
            name: self.name.clone(),
            url: PeerUrl::at(self.flight_addr, self.tls),
            catalog: None,
            compression: None,
        }
    }

    /// Stops serving: new connections and requests are refused, in-flight requests (a stream
    /// being sent) finish and their connections close, for `limits.shutdown_grace` at most;
    /// then the services and runtimes end, and what still runs is cut off.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let connections = self.connections;
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            let served = tokio::try_join!(async { anyhow::Ok(self.flight.await??) }, async {
                anyhow::Ok(self.http.await??)
            },);
            for listener in &connections {
                listener.ended().await;
            }
            served
        })
        .await;
        match drained {
            Ok(served) => {
                served?;
            }
            Err(_) => warn!(
                flight_connections = connections[0].open(),
                http_connections = connections[1].open(),
                grace = ?self.shutdown_grace,
                "requests still running after limits.shutdown_grace: cutting them off"
            ),
        }
        drop(self.query_runtime);
        drop(self.samples);
        Ok(())
    }
}

/// Runs `polder serve` with its effective configuration ([`effective_config`]) until SIGINT or
/// SIGTERM.
pub async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    let node = start(config).await?;
    println!(
        "polder node {} listening flight={}://{} http=http://{}",
        node.name,
        if node.tls { "grpc+tls" } else { "grpc" },
        node.flight_addr,
        node.http_addr
    );
    shutdown_signal().await;
    info!("shutting down");
    node.stop().await
}

/// Authentication and the access policy of a node that has `[auth]`.
struct Access {
    authenticator: Arc<Authenticator>,
    policy: Arc<Policy>,
    audit: Option<Arc<AuditLog>>,
}

impl Access {
    /// Loads the policy and the JWKS; either failing stops the node from starting.
    async fn load(auth: &AuthConfig, audit: Option<&AuditConfig>) -> anyhow::Result<Self> {
        let policy = match &auth.policy {
            Some(path) => Policy::load(path)?,
            None => {
                warn!("[auth] without a policy: no dataset is readable (default deny)");
                Policy::default()
            }
        };
        let authenticator = Authenticator::start(auth, policy.has_public_datasets()).await?;
        let audit = match audit {
            Some(audit) => Some(Arc::new(AuditLog::open_config(audit)?)),
            None => None,
        };
        Ok(Self {
            authenticator,
            policy: Arc::new(policy),
            audit,
        })
    }
}

/// Starts a node with a complete configuration (see [`complete`]); returns once it is ready.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let access = match &config.auth {
        Some(auth) => Some(Access::load(auth, config.audit.as_ref()).await?),
        None => None,
    };
    let ctx = session(&config)?;
    crate::telemetry::observe_memory(Arc::clone(&ctx.runtime_env().memory_pool));
    let schema = datasets::register_catalog(&ctx, &config.node.name);

    let flight_listener = TcpListener::bind(config.node.flight_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen for Flight SQL on {}",
                config.node.flight_addr
            )
        })?;
    let http_listener = TcpListener::bind(config.node.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.node.http_addr))?;
    let flight_addr = flight_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    // Each listener has a budget of connections below the descriptor limit, so that idle
    // connections cannot use up the descriptors, and a full Flight SQL budget leaves HTTP
    // (health, readiness) answering.
    let nofile = crate::connections::descriptor_limit();
    let (flight_budget, http_budget) = config.limits.connection_budgets(nofile.unwrap_or(1024));
    if let Some(nofile) = nofile
        && (flight_budget + http_budget) as u64 + 64 > nofile
    {
        warn!(
            nofile,
            max_connections = flight_budget,
            http_max_connections = http_budget,
            "the connection limits leave fewer than 64 file descriptors for data files and peers: lower them, or raise the descriptor limit (ulimit -n)"
        );
    }
    info!(
        max_connections = flight_budget,
        http_max_connections = http_budget,
        "connection limits"
    );

    let readiness = SharedReadiness::default();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);

    let shared_catalog = crate::catalog::shared();
    // Datasets the policy hides are left out of every public listing.
    let hidden: std::collections::BTreeSet<String> = match &access {
        Some(access) => config
            .tables
            .iter()
            .map(|t| t.name.clone())
            .filter(|name| access.policy.is_hidden(name))
            .collect(),
        None => Default::default(),
    };
    let peers = crate::http::SharedPeers::default();
    let mut catalog_config = config.catalog.clone().unwrap_or_default();
    if catalog_config.base_url.is_none() {
        // Only sample metadata gets here (checked at startup): IRIs under the HTTP address.
        catalog_config.base_url = Some(format!("http://{http_addr}"));
    }
    let register = Arc::new(config.register()?);
    let sensor_page = polder_catalog::sensors::page::PageContext {
        node: config.node.name.clone(),
        iris: polder_catalog::Iris::new(catalog_config.base_url.as_deref().unwrap_or_default()),
    };
    let router = crate::http::router(
        Arc::clone(&readiness),
        hidden.clone(),
        Arc::clone(&peers),
        &crate::catalog::claimed_classes(&config),
    )
    .merge(polder_catalog::sensors::page::router(
        Arc::clone(&register),
        sensor_page,
    ))
    .merge(polder_catalog::router(
        Arc::clone(&shared_catalog),
        config.limits.sparql_max_query_bytes + 4096,
    ))
    .layer(HttpTelemetry::new(&config.node.name))
    .layer(TrackRequests);
    let http_listener = Limited::new(
        http_listener,
        http_budget,
        Timeouts {
            handshake: config.limits.handshake_timeout,
            idle: config.limits.http_idle_timeout,
        },
        "http",
    );
    let http_connections = http_listener.connections();
    let mut http_shutdown = shutdown_rx.clone();
    let http = tokio::spawn(
        axum::serve(
            http_listener,
            router.into_make_service_with_connect_info::<Activity>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_shutdown.wait_for(|stop| *stop).await;
        })
        .into_future(),
    );

    let limits = &config.limits;
    let query_limits = QueryLimits {
        max_query_bytes: limits.max_query_bytes,
        timeout: limits.query_timeout,
        max_concurrent: limits.max_concurrent_queries,
        queue_timeout: limits.queue_timeout,
        max_parameter_rows: limits.max_parameter_rows,
        max_query_depth: limits.max_query_depth,
    };
    let flight_config = FlightSqlConfig {
        server: ServerInfo::new(&query_limits),
        limits: query_limits.clone(),
        max_flight_data_bytes: limits.max_flight_data_bytes,
        max_message_bytes: limits.max_message_bytes,
        ..FlightSqlConfig::default()
    };
    // Query plans run on a runtime of their own, so CPU-bound operators never stall the
    // gRPC and HTTP services or the timers that end queries at their deadline.
    let query_runtime =
        QueryRuntime::new(&query_limits).context("cannot start the query runtime")?;
    let mut engine =
        QueryEngine::new(ctx.clone(), query_limits).with_executor(query_runtime.handle());
    let sessions = access.as_ref().map(|a| {
        let sessions = PolicySessions::new(Arc::clone(&a.policy), config.node.name.clone());
        match &a.audit {
            Some(log) => sessions.with_audit(Arc::clone(log)),
            None => sessions,
        }
    });
    if let Some(sessions) = &sessions {
        engine = engine.with_sessions(Arc::new(sessions.clone()));
    }
    let service = PolderFlightSqlService::new(engine, flight_config)?;
    // Keep-alive pings find connections whose client went away during a request; the idle
    // and handshake timeouts close those that carry no request (src/connections.rs).
    let mut transport = PolderFlightSqlService::transport()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .layer(TrackRequests)
        .layer(RpcTelemetry::new(&config.node.name));
    if let (Some(cert), Some(key)) = (&config.node.tls_cert, &config.node.tls_key) {
        let read = |path: &std::path::PathBuf, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the TLS {what} {}", path.display()))
        };
        let identity = tonic::transport::Identity::from_pem(
            read(cert, "certificate")?,
            read(key, "private key")?,
        );
        transport = transport
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(identity)
                    .timeout(limits.handshake_timeout),
            )
            .context("the TLS certificate or key cannot be used")?;
    }
    // With [auth], one interceptor in front of every RPC establishes who is asking.
    let router = match &access {
        Some(access) => transport.add_service(InterceptedService::new(
            service.into_server(),
            AuthInterceptor::new(Arc::clone(&access.authenticator)),
        )),
        None => transport.add_service(service.into_server()),
    };
    let mut flight_shutdown = shutdown_rx.clone();
    let flight_listener = Limited::new(
        flight_listener,
        flight_budget,
        Timeouts {
            handshake: limits.handshake_timeout,
            idle: limits.idle_timeout,
        },
        "flight",
    );
    let flight_connections = flight_listener.connections();
    let flight = tokio::spawn(router.serve_with_incoming_shutdown(
        flight_listener.into_incoming(),
        async move {
            let _ = flight_shutdown.wait_for(|stop| *stop).await;
        },
    ));

    // Peers become catalogs of the session at once, and are discovered in the background
    // (retried until they answer): the node's start never waits on another node. Until a peer
    // is discovered, queries naming its tables fail with UNAVAILABLE naming it.
    let federation =
        FederatedSession::register_in_background(&ctx, &config.peers, &config.federation)?;
    let _ = peers.set(federation.catalogs.clone());
    // An authenticated caller's queries reach each peer with the caller's own token, so each
    // peer applies its own policy.
    if let Some(sessions) = &sessions {
        for catalog in &federation.catalogs {
            let catalog = Arc::clone(catalog);
            sessions.forward(
                catalog.peer().name().to_string(),
                Arc::new(PeerForward(catalog)),
            );
        }
    }

    // Datasets load after the listeners are up, so /healthz answers and /readyz reports
    // progress; the node is ready once every dataset is loaded or skipped.
    let mut samples = SampleFiles::default();
    samples.set_register(register.to_geojson(&register_language(&catalog_config)));
    let geojson = GeoJsonOptions {
        max_bytes: limits.max_geojson_bytes,
    };
    let loaded = datasets::load_all(
        &ctx,
        &schema,
        &config.tables,
        geojson,
        &mut samples,
        &readiness,
    )
    .await?;
    if let Some(access) = &access {
        let mut tables = std::collections::BTreeMap::new();
        for name in schema.table_names() {
            if let Some(table) = schema.table(&name).await? {
                tables.insert(name, table.schema());
            }
        }
        access.policy.check(&tables, &ctx.state())?;
    }
    let listed: Vec<_> = loaded
        .iter()
        .filter(|t| !hidden.contains(&t.name))
        .cloned()
        .collect();
    let citizen = readiness.read().citizen.clone();
    let catalog = crate::catalog::build(
        &ctx,
        &config,
        &catalog_config,
        &listed,
        &citizen,
        &register,
        flight_addr,
    )
    .await
    .context("cannot build the catalog")?;
    shared_catalog
        .set(catalog)
        .expect("the catalog is built once");
    readiness.write().ready = true;
    info!(node = %config.node.name, %flight_addr, %http_addr, tables = config.tables.len(), peers = config.peers.len(), "node ready");

    Ok(RunningNode {
        name: config.node.name.clone(),
        flight_addr,
        http_addr,
        tls: config.node.tls_cert.is_some(),
        shutdown: shutdown_tx,
        shutdown_grace: config.limits.shutdown_grace,
        connections: [flight_connections, http_connections],
        flight,
        http,
        query_runtime,
        samples,
        _federation: federation,
    })
}

/// The language of the `sensor_register` table's texts: the catalog's first language when it
/// is Dutch, else English.
fn register_language(catalog: &polder_catalog::CatalogConfig) -> String {
    match catalog.languages.first().map(String::as_str) {
        Some("nl") => "nl".into(),
        _ => "en".into(),
    }
}

/// How often the Flight SQL service pings an HTTP/2 connection, and how long it waits for the
/// answer before it closes the connection (a client that went away mid-request).
const HTTP2_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
const HTTP2_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A federation peer as an authenticated caller sees it: queried with the caller's own token.
struct PeerForward(Arc<polder_federation::PeerCatalog>);

impl polder_access::ForwardCatalog for PeerForward {
    fn for_caller<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Arc<dyn datafusion::catalog::CatalogProvider>> {
        Box::pin(self.0.for_caller(token))
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
