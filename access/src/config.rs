//! The `[auth]` section of a node's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::audit::{AuditLimits, MIN_STATEMENT_BYTES, RateLimit};
use crate::error::ConfigError;

/// The longest clock skew a node tolerates on `exp` and `nbf`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// How callers prove who they are, and what each may read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the identity provider's public keys are: a JWKS file (a path or `file://` URL) or
    /// an `https://` (or `http://`) URL.
    pub jwks: String,
    /// The one accepted `iss` claim.
    pub issuer: String,
    /// The `aud` value a token must carry (usually the node's own name or URL).
    pub audience: String,
    /// Tolerated clock skew on `exp` and `nbf`; at most 60 s.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// How often the JWKS is fetched again (keys rotate); the last good set is kept when a
    /// fetch fails.
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Longest bearer token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// The access policy (TOML). Without one, nothing is readable: default deny.
    pub policy: Option<PathBuf>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_max_token_bytes() -> usize {
    8 * 1024
}

impl AuthConfig {
    /// Settings with defaults for everything but the three required values.
    pub fn new(jwks: String, issuer: String, audience: String) -> Self {
        Self {
            jwks,
            issuer,
            audience,
            leeway: default_leeway(),
            refresh_interval: default_refresh_interval(),
            max_token_bytes: default_max_token_bytes(),
            policy: None,
        }
    }

    /// Checks ranges and required values; the message names the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("auth.jwks", &self.jwks),
            ("auth.issuer", &self.issuer),
            ("auth.audience", &self.audience),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Empty(key));
            }
        }
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::Leeway(self.leeway));
        }
        if self.refresh_interval < Duration::from_secs(1) {
            return Err(ConfigError::RefreshInterval);
        }
        if self.max_token_bytes < 256 {
            return Err(ConfigError::MaxTokenBytes);
        }
        Ok(())
    }
}

/// The `[audit]` section: where every query is recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The append-only log file (JSON lines); created when missing, continued when present
    /// (after checking it).
    pub log: PathBuf,
    /// The Ed25519 private key (PKCS#8 PEM) that signs checkpoints, e.g. from
    /// `polder token keygen`. Keep its public JWKS for `polder audit verify`.
    pub signing_key: PathBuf,
    /// A signed checkpoint after this many records (and when the node stops).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// The longest statement text a record keeps (literals replaced), in bytes; a longer
    /// statement is kept as a prefix, with its full length and SHA-256.
    #[serde(default = "default_max_statement_bytes")]
    pub max_statement_bytes: usize,
    /// Refusal records per second of all anonymous callers together; past the burst, refusals
    /// are counted into one `refusals_suppressed` record a second.
    #[serde(default = "default_anonymous_refusals_per_second")]
    pub anonymous_refusals_per_second: u32,
    /// Refusal records anonymous callers may cause at once.
    #[serde(default = "default_anonymous_refusal_burst")]
    pub anonymous_refusal_burst: u32,
    /// Refusal records per second of each authenticated subject.
    #[serde(default = "default_refusals_per_second")]
    pub refusals_per_second: u32,
    /// Refusal records each authenticated subject may cause at once.
    #[serde(default = "default_refusal_burst")]
    pub refusal_burst: u32,
}

fn default_checkpoint_every() -> u64 {
    1000
}

fn default_max_statement_bytes() -> usize {
    AuditLimits::default().max_statement_bytes
}

fn default_anonymous_refusals_per_second() -> u32 {
    AuditLimits::default().anonymous_refusals.per_second
}

fn default_anonymous_refusal_burst() -> u32 {
    AuditLimits::default().anonymous_refusals.burst
}

fn default_refusals_per_second() -> u32 {
    AuditLimits::default().subject_refusals.per_second
}

fn default_refusal_burst() -> u32 {
    AuditLimits::default().subject_refusals.burst
}

/// The longest statement prefix `audit.max_statement_bytes` may keep.
const MAX_STATEMENT_BYTES: usize = 1024 * 1024;

impl AuditConfig {
    /// An audit section with the default checkpoint interval and limits.
    pub fn new(log: PathBuf, signing_key: PathBuf) -> Self {
        Self {
            log,
            signing_key,
            checkpoint_every: default_checkpoint_every(),
            max_statement_bytes: default_max_statement_bytes(),
            anonymous_refusals_per_second: default_anonymous_refusals_per_second(),
            anonymous_refusal_burst: default_anonymous_refusal_burst(),
            refusals_per_second: default_refusals_per_second(),
            refusal_burst: default_refusal_burst(),
        }
    }

    /// What callers can make the log write.
    pub fn limits(&self) -> AuditLimits {
        AuditLimits {
            max_statement_bytes: self.max_statement_bytes,
            anonymous_refusals: RateLimit {
                per_second: self.anonymous_refusals_per_second,
                burst: self.anonymous_refusal_burst,
            },
            subject_refusals: RateLimit {
                per_second: self.refusals_per_second,
                burst: self.refusal_burst,
            },
        }
    }

    /// Checks ranges; the message names the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.checkpoint_every == 0 {
            return Err(ConfigError::CheckpointEvery);
        }
        if !(MIN_STATEMENT_BYTES..=MAX_STATEMENT_BYTES).contains(&self.max_statement_bytes) {
            return Err(ConfigError::MaxStatementBytes {
                min: MIN_STATEMENT_BYTES,
                max: MAX_STATEMENT_BYTES,
            });
        }
        for (key, value) in [
            (
                "audit.anonymous_refusal_burst",
                self.anonymous_refusal_burst,
            ),
            ("audit.refusal_burst", self.refusal_burst),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroBurst(key));
            }
        }
        Ok(())
    }
}
