//! Fuzz targets for what reaches the access layer from outside: bearer tokens (JWT parsing and
//! verification against a JWKS, through [`Authenticator`]), JWKS documents ([`KeySet::parse`])
//! and policy files ([`Policy::parse`], then [`Policy::check`] against a table).
//!
//! Each target is a `bolero` harness. Under `cargo test` it replays the inputs in
//! `tests/__fuzz__/<target>/{corpus,crashes}` and then generates inputs for [`CI_TIME`];
//! `BOLERO_RANDOM_TEST_TIME_MS` (or `BOLERO_RANDOM_ITERATIONS`) runs it longer, and
//! `cargo +nightly bolero test` runs the same target under libFuzzer, coverage-guided (see
//! "Fuzzing" in docs/security-guide.md). Inputs that once failed stay below as regression
//! tests.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;
use polder_access::mint::{Algorithm, TokenRequest, generate_key, mint};
use polder_access::{AuthConfig, AuthError, Authenticator, Claims, Identity, KeySet, Policy};
use tonic::metadata::{MetadataMap, MetadataValue};

/// How long each target generates inputs under plain `cargo test`.
const CI_TIME: Duration = Duration::from_secs(3);

/// An authenticator over a freshly generated Ed25519 key, and a valid token it accepts.
struct Issuer {
    auth: Authenticator,
    token: String,
}

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let (pem, jwks) = generate_key("dev").unwrap();
        let keys = KeySet::parse(jwks.as_bytes(), "generated").unwrap();
        let config = AuthConfig::new(String::new(), "https://idp.test".into(), "utrecht".into());
        let auth = Authenticator::with_keys(&config, keys, false);
        let request = TokenRequest {
            subject: "alice".into(),
            issuer: "https://idp.test".into(),
            audience: "utrecht".into(),
            groups: vec!["analysts".into()],
            roles: vec![],
            organisation: Some("gemeente-utrecht".into()),
            purpose: None,
            ttl: Duration::from_secs(3600),
            kid: "dev".into(),
            algorithm: Algorithm::EdDSA,
        };
        let token = mint(&request, pem.as_bytes()).unwrap();
        assert_eq!(auth.verify(&token).unwrap().sub, "alice");
        Issuer { auth, token }
    })
}

/// Any text as a bearer token: never a panic, never accepted (no text but one signed with the
/// key verifies), and as an `Authorization` header value the same.
fn verify_text(token: &str) {
    let issuer = issuer();
    let verdict = issuer.auth.verify(token);
    if token != issuer.token {
        assert!(verdict.is_err(), "accepted {token:?}");
    }
    if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value);
        let identity = issuer.auth.authenticate(&metadata);
        if token.trim() != issuer.token {
            assert!(identity.is_err(), "authenticated {token:?}");
        }
    }
}

#[test]
fn fuzz_jwt_text() {
    bolero::check!()
        .with_test_time(CI_TIME)
        .for_each(|bytes: &[u8]| {
            verify_text(&String::from_utf8_lossy(bytes));
        });
}

/// Characters of a JWT and those that may confuse its parsing.
const TOKEN_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \t{}\"\\\0";

/// The valid token with edits: `(position, kind, byte)` overwrites, inserts or deletes one
/// character, or cuts, doubles or swaps the token's three parts. No edit is accepted unless
/// the result is the valid token again.
fn mutate(token: &str, edits: &[(u16, u8, u8)]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for &(position, kind, byte) in edits {
        let at = usize::from(position) % (bytes.len() + 1);
        let byte = TOKEN_ALPHABET[usize::from(byte) % TOKEN_ALPHABET.len()];
        match kind % 6 {
            0 if at < bytes.len() => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => bytes.truncate(at),
            4 => {
                // Swap two of the parts, or repeat one.
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut parts: Vec<&str> = text.split('.').collect();
                let n = parts.len();
                let (i, j) = (at % n, usize::from(byte) % n);
                if kind % 12 < 6 {
                    parts.swap(i, j);
                } else {
                    parts.insert(i, parts[j]);
                }
                bytes = parts.join(".").into_bytes();
            }
            _ if at < bytes.len() => bytes[at] ^= 1 << (byte % 8),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn fuzz_jwt_mutated() {
    bolero::check!()
        .with_type::<Vec<(u16, u8, u8)>>()
        .with_test_time(CI_TIME)
        .for_each(|edits| {
            verify_text(&mutate(&issuer().token, edits));
        });
}

/// A valid token's payload replaced by arbitrary JSON claims and re-encoded, with the
/// original signature: refused (the signature covers the payload) and never a panic.
#[test]
fn fuzz_jwt_claims() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    bolero::check!()
        .with_type::<(String, Vec<(u8, String)>)>()
        .with_test_time(CI_TIME)
        .for_each(|(header, claims)| {
            const KEYS: &[&str] = &[
                "sub", "iss", "aud", "exp", "nbf", "iat", "groups", "roles", "org", "purpose",
                "alg", "kid", "typ", "crit", "jku", "x5u",
            ];
            let mut object = serde_json::Map::new();
            for (key, value) in claims {
                let value = serde_json::from_str(value)
                    .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
                object.insert(KEYS[usize::from(*key) % KEYS.len()].into(), value);
            }
            let token = &issuer().token;
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&object).unwrap());
            let with_claims = parts.join(".");
            verify_text(&with_claims);
            // The header replaced as well, by arbitrary text.
            parts[0] = URL_SAFE_NO_PAD.encode(header);
            verify_text(&parts.join("."));
        });
}

/// Any bytes as a JWKS document: never a panic; a key set that parses (it cannot hold the
/// issuer's freshly generated key) refuses the issuer's token.
#[test]
fn fuzz_jwks_document() {
    bolero::check!()
        .with_test_time(CI_TIME)
        .for_each(|bytes: &[u8]| {
            if let Ok(keys) = KeySet::parse(bytes, "fuzz") {
                let config = AuthConfig::new(String::new(), "i".into(), "a".into());
                let auth = Authenticator::with_keys(&config, keys, false);
                assert!(auth.verify(&issuer().token).is_err());
            }
        });
}

/// JWKS documents shaped like real ones: each key's fields chosen from the input.
#[test]
fn fuzz_jwks_shaped() {
    bolero::check!()
        .with_type::<Vec<(u8, u8, u8, String)>>()
        .with_test_time(CI_TIME)
        .for_each(|keys| {
            const KTY: &[&str] = &["OKP", "RSA", "EC", "oct", "", "okp"];
            const CRV: &[&str] = &["Ed25519", "P-256", "P-384", "P-521", "X25519", ""];
            const ALG: &[&str] = &[
                "EdDSA", "RS256", "PS512", "ES256", "ES384", "HS256", "none", "",
            ];
            let keys: Vec<serde_json::Value> = keys
                .iter()
                .map(|(kty, crv, alg, value)| {
                    serde_json::json!({
                        "kty": KTY[usize::from(*kty) % KTY.len()],
                        "crv": CRV[usize::from(*crv) % CRV.len()],
                        "alg": ALG[usize::from(*alg) % ALG.len()],
                        "kid": "dev",
                        "use": "sig",
                        "x": value, "y": value, "n": value, "e": value, "k": value,
                    })
                })
                .collect();
            let document = serde_json::json!({ "keys": keys }).to_string();
            if let Ok(keys) = KeySet::parse(document.as_bytes(), "fuzz") {
                let config =
                    AuthConfig::new(String::new(), "https://idp.test".into(), "utrecht".into());
                let auth = Authenticator::with_keys(&config, keys, false);
                assert!(
                    matches!(
                        auth.verify(&issuer().token),
                        Err(AuthError::Rejected(_)) | Err(AuthError::WrongAlgorithm)
                    ),
                    "{document}"
                );
            }
        });
}

/// The tables a fuzzed policy is checked against: `t(a BIGINT, b VARCHAR, c DOUBLE)` and `u`.
fn node_tables() -> &'static (BTreeMap<String, SchemaRef>, SessionState) {
    static TABLES: OnceLock<(BTreeMap<String, SchemaRef>, SessionState)> = OnceLock::new();
    TABLES.get_or_init(|| {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
        ]));
        let mut tables = BTreeMap::new();
        tables.insert("t".to_string(), schema.clone());
        tables.insert("u".to_string(), schema);
        (tables, SessionContext::new().state())
    })
}

/// Policy text: never a panic. A policy that parses is checked against the node's tables and
/// decides for an anonymous caller and a user, again without a panic.
fn policy(text: &str) {
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let (tables, state) = node_tables();
    let _ = policy.check(tables, state);
    let user = Identity::User {
        claims: Arc::new(Claims::example()),
        token: Arc::from("token"),
    };
    for name in ["t", "u", "v"] {
        let _ = policy.decide(&Identity::Anonymous, name);
        let _ = policy.decide(&user, name);
    }
}

#[test]
fn fuzz_policy_text() {
    bolero::check!()
        .with_test_time(CI_TIME)
        .for_each(|bytes: &[u8]| {
            policy(&String::from_utf8_lossy(bytes));
        });
}

/// Lines of policy files: tables, keys of every kind with good and bad values.
const POLICY_LINES: &[&str] = &[
    "[[dataset]]",
    "name = \"t\"",
    "name = \"u\"",
    "name = \"v\"",
    "public = true",
    "personal = true",
    "hidden = true",
    "purposes = [\"research\"]",
    "purposes = [\" \"]",
    "[[dataset.rule]]",
    "access = \"raw\"",
    "access = \"aggregate\"",
    "access = \"deny\"",
    "access = \"all\"",
    "groups = [\"group\", \"analysts\"]",
    "roles = [\"role\"]",
    "subjects = [\"subject\"]",
    "organisations = [\"organisation\"]",
    "deny_columns = [\"a\"]",
    "deny_columns = [\"z\"]",
    "masks = { b = \"NULL\" }",
    "masks = { a = \"a / 100 * 100\", b = \"left(b, 2)\" }",
    "masks = { c = \"'x'\" }",
    "masks = { b = \"\" }",
    "row_filter = \"a > 0\"",
    "row_filter = \"b = $org\"",
    "row_filter = \"array_has($groups, b)\"",
    "row_filter = \"a\"",
    "row_filter = \"\"",
    "row_filter = \"$nothing\"",
    "row_filter = \"a > (SELECT 1)\"",
    "[dataset.aggregate]",
    "unit = \"a\"",
    "unit = \"b\"",
    "min_group_size = 5",
    "min_group_size = 1",
    "min_group_size = -1",
    "min_group_size = 18446744073709551615",
    "dimensions = [\"b\", \"c\"]",
    "dimensions = [\"a\"]",
    "functions = [\"count\", \"sum\", \"avg\"]",
    "functions = [\"median\", \"nope\"]",
    "on_violation = \"refuse\"",
    "on_violation = \"suppress\"",
    "[dataset.aggregate.perturbation]",
    "key_file = \"/dev/null\"",
    "key_file = \"/nonexistent\"",
    "key_file = \"\"",
    "count_spread = 0",
    "count_spread = 4294967295",
    "magnitude = 0.5",
    "magnitude = nan",
    "magnitude = inf",
    "magnitude = -0.0",
    "secret = true",
    "name = 1",
    "[dataset]",
    "[[dataset.rule.masks]]",
    "\"\\u0000\" = 1",
    "x = \"\"\"",
    "'''",
    "#",
];

/// SQL pieces for row filters and masks, repeated for deep nesting and long chains as in the
/// Flight SQL fuzz target.
const EXPR_TOKENS: &[&str] = &[
    "a",
    "b",
    "c",
    "$org",
    "$groups",
    "$sub",
    "$purpose",
    "$1",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    "=",
    "<",
    "AND",
    "OR",
    "NOT",
    "1",
    "'x'",
    "NULL",
    "CASE WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST(",
    "AS BIGINT)",
    "left(",
    ",",
    "array_has(",
    "IN (",
    "SELECT",
    "FROM t",
    "count(*)",
    "sum(a)",
    "OVER ()",
    "[",
    "]",
    "::INT",
    "'",
];

fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// A line of a generated policy: which line, and a row filter or mask (`mode`) from
/// `(token, repeat)` pairs when there are any.
type PolicyLine = (u8, u8, Vec<(u8, u8)>);

/// A policy file from `(line, repeat)` pairs; a piece with an expression byte also gets a
/// generated row filter or mask.
fn grammar_policy(lines: &[PolicyLine]) -> String {
    let mut out = String::new();
    for (line, mode, expr) in lines {
        out.push_str(POLICY_LINES[usize::from(*line) % POLICY_LINES.len()]);
        out.push('\n');
        if expr.is_empty() {
            continue;
        }
        let mut text = String::new();
        for &(token, repeat) in expr {
            let times = if repeat >= 244 {
                1usize << (repeat - 244)
            } else {
                1
            };
            for _ in 0..times {
                text.push_str(EXPR_TOKENS[usize::from(token) % EXPR_TOKENS.len()]);
                text.push(' ');
            }
        }
        let text = toml_string(&text);
        match mode % 3 {
            0 => out.push_str(&format!("row_filter = {text}\n")),
            1 => out.push_str(&format!("masks = {{ a = {text} }}\n")),
            _ => out.push_str(&format!("masks = {{ b = {text}, c = {text} }}\n")),
        }
    }
    out
}

#[test]
fn fuzz_policy_grammar() {
    bolero::check!()
        .with_type::<Vec<PolicyLine>>()
        .with_test_time(CI_TIME)
        .for_each(|lines| {
            policy(&grammar_policy(lines));
        });
}

/// Found by `fuzz_jwks_shaped`: jsonwebtoken 10.4 accepts an Ed25519 JWK whose `x` is shorter
/// than 32 bytes and then panics verifying any token with it ("range end index 32 out of
/// range"). `KeySet::parse` now skips such a key (and refuses a set with no other key).
#[test]
fn regression_short_ed25519_key() {
    for x in ["", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let document = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "dev", "use": "sig", "x": x},
        ]})
        .to_string();
        assert!(
            KeySet::parse(document.as_bytes(), "short").is_err(),
            "{x:?}"
        );
    }
}
