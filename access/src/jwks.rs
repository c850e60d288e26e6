//! The identity provider's public keys: a JWKS read from a file or fetched from a URL.
//!
//! Each usable key is kept under its `kid` with the one algorithm it verifies. That algorithm is
//! pinned by the key (its `alg`, or the only sensible one for its type and curve), never taken
//! from a token: a token whose header names another algorithm is refused before any signature
//! check, which closes the algorithm-confusion attacks (`alg: none`, HS256 keyed with the RSA
//! public key).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::warn;

use crate::error::{JwksError, KeyAlgorithmError, UnusableKey};

/// The largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where a JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file.
    File(PathBuf),
    /// An `http(s)://` URL, fetched with a timeout.
    Url(url::Url),
}

impl JwksSource {
    /// Reads `spec`: an `http(s)://` URL, a `file://` URL or a path.
    pub fn parse(spec: &str) -> Result<Self, JwksError> {
        let bad = |reason: String| JwksError::Fetch {
            source_name: spec.to_string(),
            reason,
        };
        if spec.starts_with("http://") || spec.starts_with("https://") {
            return url::Url::parse(spec)
                .map(JwksSource::Url)
                .map_err(|e| bad(e.to_string()));
        }
        if spec.starts_with("file://") {
            let url = url::Url::parse(spec).map_err(|e| bad(e.to_string()))?;
            return url
                .to_file_path()
                .map(JwksSource::File)
                .map_err(|()| bad("not a local file path".into()));
        }
        if spec.contains("://") {
            return Err(bad(
                "only http://, https:// and file:// URLs or paths are supported".into(),
            ));
        }
        Ok(JwksSource::File(PathBuf::from(spec)))
    }

    /// The file or URL, for messages.
    pub fn name(&self) -> String {
        match self {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url(url) => url.to_string(),
        }
    }

    /// Reads and parses the key set.
    pub async fn load(&self, timeout: Duration) -> Result<KeySet, JwksError> {
        let bytes = self.fetch(timeout).await?;
        KeySet::parse(&bytes, &self.name())
    }

    async fn fetch(&self, timeout: Duration) -> Result<Vec<u8>, JwksError> {
        let fail = |reason: String| JwksError::Fetch {
            source_name: self.name(),
            reason,
        };
        match self {
            JwksSource::File(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                if meta.len() > MAX_JWKS_BYTES as u64 {
                    return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
                }
                tokio::fs::read(path).await.map_err(|e| fail(e.to_string()))
            }
            JwksSource::Url(url) => {
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                let mut response = client
                    .get(url.clone())
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| fail(e.to_string()))?;
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
        }
    }
}

/// A key that verifies tokens, with the one algorithm it accepts.
#[derive(Clone)]
pub struct VerifyKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The usable signing keys of a JWKS, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyKey>,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify tokens (encryption keys, symmetric keys,
    /// keys without `kid`, unsupported curves) are skipped with a warning; a set without any
    /// usable key is an error, and so is a `kid` used twice.
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Self, JwksError> {
        let invalid = |reason: String| JwksError::Parse {
            source_name: source_name.to_string(),
            reason,
        };
        let document: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let entries = document
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| invalid("no \"keys\" array".into()))?;
        let mut keys = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let usable = serde_json::from_value::<Jwk>(entry.clone())
                .map_err(UnusableKey::from)
                .and_then(|jwk| usable_key(&jwk));
            match usable {
                Ok((kid, key)) => {
                    if keys.insert(kid.clone(), key).is_some() {
                        return Err(invalid(format!("key id '{kid}' is used twice")));
                    }
                }
                Err(reason) => {
                    warn!(jwks = source_name, index, reason = %reason, "JWKS key skipped");
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey(source_name.to_string()));
        }
        Ok(Self { keys })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyKey> {
        self.keys.get(kid)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The `kid` and verifying key of a JWK, or why it cannot verify tokens.
fn usable_key(jwk: &Jwk) -> Result<(String, VerifyKey), UnusableKey> {
    let kid = jwk
        .common
        .key_id
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or(UnusableKey::NoKeyId)?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err(UnusableKey::NotForSignatures(kid)),
    }
    let algorithm = match pinned_algorithm(jwk) {
        Ok(algorithm) => algorithm,
        Err(source) => return Err(UnusableKey::Algorithm { kid, source }),
    };
    if let AlgorithmParameters::OctetKeyPair(p) = &jwk.algorithm {
        // jsonwebtoken takes any `x` and panics verifying with one shorter than 32 bytes.
        use base64::Engine as _;
        let Ok(x) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&p.x) else {
            return Err(UnusableKey::NotBase64(kid));
        };
        if x.len() != 32 {
            return Err(UnusableKey::Ed25519Length {
                kid,
                length: x.len(),
            });
        }
    }
    match DecodingKey::from_jwk(jwk) {
        Ok(key) => Ok((kid, VerifyKey { key, algorithm })),
        Err(source) => Err(UnusableKey::Decode { kid, source }),
    }
}

/// The one algorithm a key verifies: its declared `alg` when that fits the key type, otherwise
/// the standard algorithm of its type and curve.
fn pinned_algorithm(jwk: &Jwk) -> Result<Algorithm, KeyAlgorithmError> {
    use Algorithm::*;
    let (fitting, default): (&[Algorithm], Algorithm) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (&[RS256, RS384, RS512, PS256, PS384, PS512], RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (&[ES256], ES256),
            EllipticCurve::P384 => (&[ES384], ES384),
            ref other => return Err(KeyAlgorithmError::UnsupportedCurve(other.clone())),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (&[EdDSA], EdDSA),
            ref other => return Err(KeyAlgorithmError::UnsupportedCurve(other.clone())),
        },
        AlgorithmParameters::OctetKey(_) => return Err(KeyAlgorithmError::Symmetric),
    };
    let Some(declared) = &jwk.common.key_algorithm else {
        return Ok(default);
    };
    let name = declared.to_string();
    let algorithm =
        Algorithm::from_str(&name).map_err(|_| KeyAlgorithmError::NotSignature(name.clone()))?;
    if fitting.contains(&algorithm) {
        Ok(algorithm)
    } else {
        Err(KeyAlgorithmError::DoesNotFit(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(keys: serde_json::Value) -> Result<KeySet, JwksError> {
        KeySet::parse(
            serde_json::json!({ "keys": keys }).to_string().as_bytes(),
            "test",
        )
    }

    #[test]
    fn pins_the_algorithm_by_key_type() {
        let keys = set(serde_json::json!([
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"},
        ]))
        .unwrap();
        assert_eq!(keys.get("ed").unwrap().algorithm, Algorithm::EdDSA);
    }

    #[test]
    fn skips_keys_that_cannot_verify_and_refuses_an_empty_set() {
        let err = set(serde_json::json!([
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "wrong", "alg": "RS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "hs", "alg": "HS256"},
        ]))
        .unwrap_err();
        assert!(matches!(err, JwksError::NoUsableKey(_)), "{err}");
    }

    #[test]
    fn refuses_a_kid_used_twice_and_a_document_without_keys() {
        let twice = set(serde_json::json!([
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "a"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "a"},
        ]))
        .unwrap_err();
        assert!(twice.to_string().contains("used twice"), "{twice}");
        let none = KeySet::parse(b"{\"other\": []}", "test").unwrap_err();
        assert!(none.to_string().contains("keys"), "{none}");
        let garbage = KeySet::parse(b"not json", "test").unwrap_err();
        assert!(matches!(garbage, JwksError::Parse { .. }));
    }

    #[test]
    fn parses_sources() {
        assert_eq!(
            JwksSource::parse("keys/jwks.json").unwrap(),
            JwksSource::File("keys/jwks.json".into())
        );
        assert_eq!(
            JwksSource::parse("file:///etc/jwks.json").unwrap(),
            JwksSource::File("/etc/jwks.json".into())
        );
        assert!(matches!(
            JwksSource::parse("https://idp.example/jwks").unwrap(),
            JwksSource::Url(_)
        ));
        assert!(JwksSource::parse("ftp://idp.example/jwks").is_err());
    }
}
