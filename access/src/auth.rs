//! Bearer-token authentication in front of the whole Flight SQL service.

use std::sync::{Arc, Weak};
use std::time::Duration;

use jsonwebtoken::{Validation, decode, decode_header};
use parking_lot::RwLock;
use serde::Deserialize;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};
use tracing::{debug, info, warn};

use crate::config::{AuthConfig, MAX_LEEWAY};
use crate::error::{AuthError, JwksError};
use crate::jwks::{JwksSource, KeySet};

/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The claims of a verified token that the policy can match on.
///
/// `iss`, `aud`, `exp`, `nbf` and `sub` are required and checked by [`Authenticator`]; a claim
/// of the wrong type (a string `exp`, a string where a list of groups belongs) refuses the
/// token. Other claims are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Who the caller is.
    pub sub: String,
    /// Who issued the token.
    pub iss: String,
    /// The caller's groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The caller's roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The caller's organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// Why the caller asks: the policy may bind datasets to purposes.
    #[serde(default)]
    pub purpose: Option<String>,
}

impl Claims {
    /// A caller with every claim set, to check policy expressions that name claims.
    pub fn example() -> Self {
        Self {
            sub: "subject".into(),
            iss: "issuer".into(),
            groups: vec!["group".into()],
            roles: vec!["role".into()],
            org: Some("organisation".into()),
            purpose: Some("purpose".into()),
        }
    }
}

/// Who is asking, as the authentication layer established it.
#[derive(Clone)]
pub enum Identity {
    /// No token: only datasets declared public are readable.
    Anonymous,
    /// A verified token.
    User {
        /// Its claims.
        claims: Arc<Claims>,
        /// The token itself, to forward to the peers that hold the data.
        token: Arc<str>,
    },
}

impl Identity {
    /// The subject, or `anonymous`, for logs.
    pub fn subject(&self) -> &str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User { claims, .. } => &claims.sub,
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("Anonymous"),
            // Never the token: it is a credential.
            Identity::User { claims, .. } => f.debug_tuple("User").field(claims).finish(),
        }
    }
}

/// Verifies bearer tokens against the current keys of a JWKS, which a background task fetches
/// again every refresh interval.
#[derive(Debug)]
pub struct Authenticator {
    keys: RwLock<Arc<KeySet>>,
    issuer: String,
    audience: String,
    leeway: Duration,
    max_token_bytes: usize,
    allow_anonymous: bool,
}

impl Authenticator {
    /// Loads the JWKS once (an error stops the node from starting) and keeps it fresh in the
    /// background for as long as the authenticator lives. `allow_anonymous` lets requests
    /// without any `Authorization` header through as [`Identity::Anonymous`].
    pub async fn start(config: &AuthConfig, allow_anonymous: bool) -> Result<Arc<Self>, JwksError> {
        let source = JwksSource::parse(&config.jwks)?;
        let keys = source.load(FETCH_TIMEOUT).await?;
        info!(jwks = %source.name(), keys = keys.len(), "JWKS loaded");
        crate::telemetry::jwks_loaded();
        let auth = Arc::new(Self::with_keys(config, keys, allow_anonymous));
        tokio::spawn(refresh(
            Arc::downgrade(&auth),
            source,
            config.refresh_interval,
        ));
        Ok(auth)
    }

    /// An authenticator over a fixed key set.
    pub fn with_keys(config: &AuthConfig, keys: KeySet, allow_anonymous: bool) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway.min(MAX_LEEWAY),
            max_token_bytes: config.max_token_bytes,
            allow_anonymous,
        }
    }

    /// The identity behind a request's metadata: exactly one `Authorization: Bearer` header
    /// with a valid token, or none at all where anonymous access is allowed.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Identity, AuthError> {
        let mut values = metadata.get_all("authorization").iter();
        let Some(value) = values.next() else {
            return if self.allow_anonymous {
                Ok(Identity::Anonymous)
            } else {
                Err(AuthError::Missing)
            };
        };
        if values.next().is_some() {
            return Err(AuthError::Repeated);
        }
        if value.len() > self.max_token_bytes + "Bearer ".len() {
            return Err(AuthError::TooLong(self.max_token_bytes));
        }
        let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthError::NotBearer),
        };
        let claims = self.verify(token)?;
        Ok(Identity::User {
            claims: Arc::new(claims),
            token: Arc::from(token),
        })
    }

    /// Verifies a token: its key by `kid`, the algorithm the key is pinned to, the signature,
    /// `exp` and `nbf` (with the configured leeway), `iss`, `aud`, `sub`, and the claims' types.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLong(self.max_token_bytes));
        }
        let header = decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or(AuthError::NoKeyId)?;
        let keys = Arc::clone(&self.keys.read());
        let key = keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let data = decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| AuthError::Rejected(format!("{:?}", e.kind())))?;
        Ok(data.claims)
    }

    fn replace_keys(&self, keys: KeySet) {
        *self.keys.write() = Arc::new(keys);
    }
}

/// Fetches the JWKS every `interval` while the authenticator lives; a failed fetch keeps the
/// last good keys.
async fn refresh(auth: Weak<Authenticator>, source: JwksSource, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(_) = auth.upgrade() else { return };
        let loaded = source.load(FETCH_TIMEOUT).await;
        let Some(auth) = auth.upgrade() else { return };
        match loaded {
            Ok(keys) => {
                debug!(jwks = %source.name(), keys = keys.len(), "JWKS refreshed");
                auth.replace_keys(keys);
                crate::telemetry::jwks_loaded();
            }
            Err(err) => {
                warn!(jwks = %source.name(), error = %err, "JWKS refresh failed; keeping the last good keys")
            }
        }
    }
}

/// The authentication layer: a tonic interceptor in front of every RPC of the service. It puts
/// the caller's [`Identity`] into the request's extensions, or answers Unauthenticated with one
/// constant message.
#[derive(Debug, Clone)]
pub struct AuthInterceptor {
    auth: Arc<Authenticator>,
}

impl AuthInterceptor {
    /// The layer for `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.auth.authenticate(request.metadata()) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Ok(request)
            }
            Err(err) => {
                info!(reason = %err, "request refused: not authenticated");
                Err(err.status())
            }
        }
    }
}
