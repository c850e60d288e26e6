//! Development keys and tokens for `polder token`: an Ed25519 key pair with its JWKS, and tokens
//! signed with a local private key. Production tokens come from the city's identity provider.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{EncodingKey, Header, encode};
use rand::RngCore;
use serde::Serialize;

use crate::error::MintError;

/// A new Ed25519 key pair: the private key as PKCS#8 PEM and the public key as a JWKS with
/// one key, `kid`.
pub fn generate_key(kid: &str) -> Result<(String, String), MintError> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let signing = SigningKey::from_bytes(&seed);
    let pem = signing
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(MintError::EncodeKey)?;
    let jwks = serde_json::json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()),
        }]
    });
    let jwks = serde_json::to_string_pretty(&jwks)?;
    Ok((pem.to_string(), jwks))
}

/// What goes into a development token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `sub` claim.
    pub subject: String,
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim.
    pub audience: String,
    /// The `groups` claim.
    pub groups: Vec<String>,
    /// The `roles` claim.
    pub roles: Vec<String>,
    /// The `org` claim.
    pub organisation: Option<String>,
    /// The `purpose` claim.
    pub purpose: Option<String>,
    /// How long the token is valid from now.
    pub ttl: Duration,
    /// The key id put in the header.
    pub kid: String,
    /// The signature algorithm (it must fit the key).
    pub algorithm: Algorithm,
}

#[derive(Serialize)]
struct TokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
}

/// Signs a token with the PEM private key `key_pem` (Ed25519 for EdDSA, RSA for RS*/PS*, EC for
/// ES*).
pub fn mint(request: &TokenRequest, key_pem: &[u8]) -> Result<String, MintError> {
    use Algorithm::*;
    let key = match request.algorithm {
        EdDSA => EncodingKey::from_ed_pem(key_pem),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(key_pem),
        ES256 | ES384 => EncodingKey::from_ec_pem(key_pem),
        HS256 | HS384 | HS512 => {
            return Err(MintError::Hmac);
        }
    }
    .map_err(|source| MintError::ReadKey {
        algorithm: request.algorithm,
        source,
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = TokenClaims {
        iss: &request.issuer,
        sub: &request.subject,
        aud: &request.audience,
        iat: now,
        nbf: now,
        exp: now + request.ttl.as_secs().max(1),
        groups: &request.groups,
        roles: &request.roles,
        org: request.organisation.as_deref(),
        purpose: request.purpose.as_deref(),
    };
    let mut header = Header::new(request.algorithm);
    header.kid = Some(request.kid.clone());
    encode(&header, &claims, &key).map_err(MintError::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authenticator;
    use crate::config::AuthConfig;
    use crate::error::AuthError;
    use crate::jwks::KeySet;

    fn request() -> TokenRequest {
        TokenRequest {
            subject: "alice".into(),
            issuer: "https://idp.test".into(),
            audience: "utrecht".into(),
            groups: vec!["analysts".into()],
            roles: vec![],
            organisation: Some("gemeente-utrecht".into()),
            purpose: Some("research".into()),
            ttl: Duration::from_secs(600),
            kid: "dev".into(),
            algorithm: Algorithm::EdDSA,
        }
    }

    #[test]
    fn a_minted_token_verifies_against_the_generated_jwks() {
        let (pem, jwks) = generate_key("dev").unwrap();
        let keys = KeySet::parse(jwks.as_bytes(), "generated").unwrap();
        let config = AuthConfig::new(String::new(), "https://idp.test".into(), "utrecht".into());
        let auth = Authenticator::with_keys(&config, keys, false);
        let token = mint(&request(), pem.as_bytes()).unwrap();
        let claims = auth.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.groups, vec!["analysts".to_string()]);
        assert_eq!(claims.purpose.as_deref(), Some("research"));

        // The same token for another audience, or under an unknown kid, is refused.
        let other = mint(
            &TokenRequest {
                audience: "rotterdam".into(),
                ..request()
            },
            pem.as_bytes(),
        )
        .unwrap();
        assert!(matches!(auth.verify(&other), Err(AuthError::Rejected(_))));
        let unknown = mint(
            &TokenRequest {
                kid: "other".into(),
                ..request()
            },
            pem.as_bytes(),
        )
        .unwrap();
        assert_eq!(auth.verify(&unknown), Err(AuthError::UnknownKey));
        // A key pair generated anew does not verify the first one's tokens.
        let (_, jwks2) = generate_key("dev").unwrap();
        let auth2 = Authenticator::with_keys(
            &config,
            KeySet::parse(jwks2.as_bytes(), "second").unwrap(),
            false,
        );
        assert!(matches!(auth2.verify(&token), Err(AuthError::Rejected(_))));
    }

    #[test]
    fn refuses_hmac() {
        let (pem, _) = generate_key("dev").unwrap();
        let err = mint(
            &TokenRequest {
                algorithm: Algorithm::HS256,
                ..request()
            },
            pem.as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, MintError::Hmac), "{err}");
    }
}
