//! Errors of authentication, key loading and the access policy.

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
}
