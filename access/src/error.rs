//! The errors of the access crate: authentication, key loading, the access policy and its
//! configuration, development tokens and the audit log.

/// Why a bearer token was refused.
///
/// The variant is logged on the node for operators. A caller only ever sees the constant message
/// of [`AuthError::status`]: nothing of what they sent is echoed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, and the node serves nothing to anonymous callers.
    #[error("no bearer token")]
    Missing,
    /// More than one `Authorization` header.
    #[error("more than one authorization header")]
    Repeated,
    /// The header is not `Bearer <token>` in visible ASCII.
    #[error("the authorization header is not a bearer token")]
    NotBearer,
    /// The token is longer than the node accepts.
    #[error("the token is longer than {0} bytes")]
    TooLong(usize),
    /// The token is not a JWS in compact form with a supported header.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The token's header names no key (`kid`).
    #[error("the token names no key (kid)")]
    NoKeyId,
    /// No key of the JWKS has the token's `kid`.
    #[error("no key of the JWKS has the token's key id")]
    UnknownKey,
    /// The token's `alg` is not the algorithm its key is pinned to.
    #[error("the token's algorithm is not the one its key is pinned to")]
    WrongAlgorithm,
    /// The signature, a time claim, the issuer, the audience or a claim's type is wrong.
    #[error("the token was rejected: {0}")]
    Rejected(String),
}

impl AuthError {
    /// The status a caller receives: always Unauthenticated, always the same message.
    pub fn status(&self) -> tonic::Status {
        tonic::Status::unauthenticated(UNAUTHENTICATED)
    }
}

/// The one message of every refused token.
pub const UNAUTHENTICATED: &str = "unauthenticated: a valid bearer token is required";

/// A JWKS that cannot be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The JWKS could not be read or fetched.
    #[error("cannot read the JWKS from {source_name}: {reason}")]
    Fetch {
        /// The file or URL.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The document is not a JWKS.
    #[error("the JWKS from {source_name} is not valid: {reason}")]
    Parse {
        /// The file or URL.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The JWKS holds no key that can verify tokens.
    #[error(
        "the JWKS from {0} holds no usable signing key (each needs a kid and an RSA, EC P-256/P-384 or Ed25519 public key)"
    )]
    NoUsableKey(String),
}

/// An access policy that cannot be loaded; each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file '{path}': {reason}")]
    Read {
        /// The policy file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML for the policy schema (unknown key, wrong type).
    #[error("invalid policy file '{path}': {reason}")]
    Parse {
        /// The policy file.
        path: String,
        /// What is wrong, with the line.
        reason: String,
    },
    /// The policy does not fit the node: an unknown dataset or column, a contradiction.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// A dataset's perturbation settings or key cannot be used.
    #[error("invalid policy: dataset '{dataset}': aggregate.{source}")]
    Perturbation {
        /// The dataset.
        dataset: String,
        /// What is wrong.
        #[source]
        source: PerturbationError,
    },
}

/// Why one key of a JWKS cannot verify tokens; the key is skipped with this reason.
#[derive(Debug, thiserror::Error)]
pub enum UnusableKey {
    /// The entry is not a JWK.
    #[error("{0}")]
    NotAJwk(#[from] serde_json::Error),
    /// The key has no (or an empty) `kid`.
    #[error("no kid")]
    NoKeyId,
    /// The key's `use` is not `sig`.
    #[error("key '{0}' is not for signatures")]
    NotForSignatures(String),
    /// No algorithm can be pinned to the key.
    #[error("key '{kid}': {source}")]
    Algorithm {
        /// The key's id.
        kid: String,
        /// Why.
        #[source]
        source: KeyAlgorithmError,
    },
    /// An Ed25519 key whose `x` is not base64url.
    #[error("key '{0}': x is not base64url")]
    NotBase64(String),
    /// An Ed25519 key whose `x` is not 32 bytes.
    #[error("key '{kid}': an Ed25519 public key is 32 bytes, not {length}")]
    Ed25519Length {
        /// The key's id.
        kid: String,
        /// The length of its `x`.
        length: usize,
    },
    /// The key's parameters do not make a verifying key.
    #[error("key '{kid}': {source}")]
    Decode {
        /// The key's id.
        kid: String,
        /// Why.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// Why no signature algorithm can be pinned to a JWK.
#[derive(Debug, thiserror::Error)]
pub enum KeyAlgorithmError {
    /// An elliptic curve other than P-256, P-384 (EC) or Ed25519 (OKP).
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(jsonwebtoken::jwk::EllipticCurve),
    /// A symmetric (`oct`) key.
    #[error("symmetric keys are not accepted: whoever holds one can sign tokens")]
    Symmetric,
    /// The declared `alg` is not a signature algorithm.
    #[error("algorithm {0} is not a signature algorithm")]
    NotSignature(String),
    /// The declared `alg` does not fit the key's type or curve.
    #[error("algorithm {0} does not fit the key type")]
    DoesNotFit(String),
}

/// A perturbation key too short to derive the node's secret from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("holds {0} bytes; a perturbation key needs at least 32 secret bytes")]
pub struct ShortSecret(pub usize);

/// A `[dataset.aggregate.perturbation]` section that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PerturbationError {
    /// `count_spread = 0`.
    #[error("perturbation.count_spread must be at least 1")]
    CountSpread,
    /// `magnitude` outside `(0, 10]`.
    #[error("perturbation.magnitude must be above 0 and at most 10, not {0}")]
    Magnitude(f64),
    /// The key file cannot be read.
    #[error("perturbation.key_file '{}' cannot be read: {source}", path.display())]
    ReadKey {
        /// The key file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds too few bytes.
    #[error("perturbation.key_file '{}' {source}", path.display())]
    ShortKey {
        /// The key file.
        path: std::path::PathBuf,
        /// How short.
        #[source]
        source: ShortSecret,
    },
}

/// An `[auth]` or `[audit]` setting out of range; each names the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required value is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// `auth.leeway` above [`MAX_LEEWAY`](crate::config::MAX_LEEWAY).
    #[error("auth.leeway is {0:?}; at most {max:?} is allowed", max = crate::config::MAX_LEEWAY)]
    Leeway(std::time::Duration),
    /// `auth.refresh_interval` below a second.
    #[error("auth.refresh_interval must be at least 1s")]
    RefreshInterval,
    /// `auth.max_token_bytes` below 256.
    #[error("auth.max_token_bytes must be at least 256")]
    MaxTokenBytes,
    /// `audit.checkpoint_every = 0`.
    #[error("audit.checkpoint_every must be greater than 0")]
    CheckpointEvery,
    /// `audit.max_statement_bytes` outside its range.
    #[error("audit.max_statement_bytes must be between {min} and {max}")]
    MaxStatementBytes {
        /// The least allowed.
        min: usize,
        /// The most allowed.
        max: usize,
    },
    /// A refusal burst of 0.
    #[error("{0} must be at least 1 (refusals past it are counted, not recorded)")]
    ZeroBurst(&'static str),
}

/// Why `polder token` cannot make a key or a token.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The new private key cannot be encoded as PKCS#8 PEM.
    #[error("encoding the private key: {0}")]
    EncodeKey(#[source] ed25519_dalek::pkcs8::Error),
    /// The JWKS cannot be written as JSON.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// HMAC was asked for.
    #[error("HMAC tokens are not accepted by nodes; use EdDSA, RS* or ES*")]
    Hmac,
    /// The private key does not fit the algorithm.
    #[error("reading the private key for {algorithm:?}: {source}")]
    ReadKey {
        /// The algorithm asked for.
        algorithm: jsonwebtoken::Algorithm,
        /// Why.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The system clock is before 1970.
    #[error("{0}")]
    Clock(#[from] std::time::SystemTimeError),
    /// Signing failed.
    #[error("signing the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Why a JWKS gives no key to verify an audit log's checkpoints with.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    /// The file is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The file is JSON, but not shaped as a JWKS (`keys` not a list of objects, ...).
    #[error("not a JWKS: {0}")]
    NotJwks(#[source] serde_json::Error),
    /// No key has `crv: Ed25519` with an `x`.
    #[error("no Ed25519 key in the JWKS")]
    NoEd25519Key,
    /// The key's `x` is not base64url.
    #[error("bad key: {0}")]
    NotBase64(#[source] base64::DecodeError),
    /// The key's `x` is not 32 bytes.
    #[error("bad key length")]
    Length,
    /// The 32 bytes are not an Ed25519 public key.
    #[error("bad key: {0}")]
    NotEd25519(#[source] ed25519_dalek::SignatureError),
}

/// Why the audit log cannot be opened, written or verified.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error("audit log {path}: {reason}")]
    Io {
        /// The log file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The signing key cannot be used.
    #[error("audit signing key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The log is not an unbroken chain, or a checkpoint does not verify.
    #[error("audit log {path} is damaged at line {line}: {reason}")]
    Broken {
        /// The log file.
        path: String,
        /// The first line that does not verify (1-based).
        line: u64,
        /// What is wrong.
        reason: String,
    },
}
