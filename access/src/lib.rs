//! Who may see what on a Polder node.
//!
//! Two steps, in this order, on every Flight SQL request:
//!
//! 1. **Authentication** ([`Authenticator`], installed as [`AuthInterceptor`] in front of the
//!    whole gRPC service): the `Authorization: Bearer` JWT is verified against the keys of a JWKS
//!    ([`KeySet`]), the key chosen by `kid` and the algorithm pinned by the key. The caller's
//!    [`Identity`] goes into the request's extensions; a bad token never reaches a handler.
//! 2. **Authorisation** ([`Policy`], applied by [`PolicySessions`]): each request is planned
//!    against a session that holds only the datasets, and the columns of them, the caller's
//!    identity may read, with masks and a row filter applied inside the scan ([`guard`]).
//!    Default deny: a dataset without a grant does not exist for the caller
//!    in metadata, and naming it in a query is refused with the reason.
//!
//! ```text
//! request ──▶ AuthInterceptor ──Identity──▶ Flight SQL handler ──▶ PolicySessions::session
//!               (token → claims)                                   (catalog view per caller)
//! ```
//!
//! [`mint`] signs development tokens for `polder token`.

pub mod aggregate;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod guard;
pub mod jwks;
pub mod mint;
pub mod perturb;
pub mod policy;
pub mod session;
pub mod telemetry;

pub use audit::AuditLog;
pub use auth::{AuthInterceptor, Authenticator, Claims, Identity};
pub use config::{AuditConfig, AuthConfig};
pub use error::{
    AuditKeyError, AuthError, ConfigError, JwksError, KeyAlgorithmError, MintError,
    PerturbationError, PolicyError, ShortSecret, UnusableKey,
};
pub use jwks::{JwksSource, KeySet};
pub use policy::{Decision, Policy};
pub use session::{ForwardCatalog, PolicySessions};
