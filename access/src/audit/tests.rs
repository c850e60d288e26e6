//! The audit log's tests: statements, the writer, the refusal limit, verification.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};

use super::chain::{GENESIS, head_path, record_hash};
use super::limiter::RefusalLimiter;
use super::record::now_text;
use super::*;

fn key(dir: &Path) -> PathBuf {
    let (pem, _) = crate::mint::generate_key("audit").unwrap();
    let path = dir.join("audit-key.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

fn record(n: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kind".into(), json!("query"));
    m.insert("subject".into(), json!(format!("user{n}")));
    m
}

/// A refused query of `subject`, refused with `outcome`.
fn refusal(subject: &str, outcome: &str, statement: Statement) -> QueryRecord {
    QueryRecord {
        time: now_text(),
        subject: subject.to_string(),
        purpose: None,
        datasets: Vec::new(),
        statement,
        outcome: Some(outcome.to_string()),
    }
}

fn strip(sql: &str) -> String {
    strip_literals(sql, 4096).text
}

fn public_key(key_path: &Path) -> VerifyingKey {
    let pem = std::fs::read_to_string(key_path).unwrap();
    SigningKey::from_pkcs8_pem(&pem).unwrap().verifying_key()
}

fn lines_of(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn strips_literals() {
    assert_eq!(
        strip("SELECT * FROM t WHERE name = 'Jan de Vries' AND  age > 42 -- bsn 123"),
        "SELECT * FROM t WHERE name = ? AND age > ?"
    );
    let stripped = strip("SELECT 'secret', 1234, x'ff' /* 5678 */");
    assert!(
        !stripped.contains("secret") && !stripped.contains("1234"),
        "{stripped}"
    );
    assert!(!stripped.contains("5678"), "{stripped}");
    // A statement that does not tokenize keeps its whole tokens before the fault only.
    let bad = strip("SELECT a FROM t WHERE b = 'unterminated secret");
    assert_eq!(
        bad,
        "SELECT a FROM t WHERE b = <does not tokenize from here>"
    );
}

#[test]
fn a_statement_is_kept_as_a_bounded_prefix_without_literals() {
    // Wherever the prefix is cut, no part of a literal gets into the text.
    let sql = "SELECT name FROM t WHERE code = 'SECRETSECRET' AND n = 98765 /* COMMENTED */ AND m = $$DOLLARSECRET$$";
    for max in 1..sql.len() + 8 {
        let stripped = strip_literals(sql, max);
        assert!(stripped.text.len() <= max, "{max}: {stripped:?}");
        for secret in ["SECRET", "98765", "987", "COMMENTED", "DOLLAR"] {
            assert!(!stripped.text.contains(secret), "{max}: {stripped:?}");
        }
    }
    // Multi-byte characters are cut at a boundary.
    let stripped = strip_literals("SELECT ééééééé FROM t", 10);
    assert_eq!(stripped.text, "SELECT é");
    assert!(stripped.truncated);
    // A short statement is whole.
    let whole = strip_literals("SELECT 1", 4096);
    assert_eq!((whole.text.as_str(), whole.truncated), ("SELECT ?", false));
}

#[test]
fn a_ten_megabyte_refusal_adds_a_few_kilobytes() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = key(dir.path());
    let log_path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&log_path, &key_path, 1000).unwrap();
    let mut sql = String::from("SELECT * FROM t WHERE x IN (");
    while sql.len() < 10 * 1024 * 1024 {
        sql.push_str("'PERSONAL VALUE é', 123456, ");
    }
    sql.push_str("0)");
    let before = std::fs::metadata(&log_path).unwrap().len();
    for _ in 0..3 {
        let record = refusal("anonymous", "invalid_request", log.statement(&sql));
        log.append_refusal(record, Caller::Anonymous).unwrap();
    }
    let grown = std::fs::metadata(&log_path).unwrap().len() - before;
    assert!(grown < 3 * 5 * 1024, "3 refusals added {grown} bytes");
    let written = lines_of(&log_path);
    let last = written.last().unwrap();
    assert_eq!(last["statement_sha256"], json!(statement_hash(&sql)));
    assert_eq!(last["statement_bytes"], json!(sql.len()));
    assert_eq!(last["statement_truncated"], json!(true));
    let text = last["statement"].as_str().unwrap();
    assert!(
        text.starts_with("SELECT * FROM t WHERE x IN (?, ?, ?"),
        "{text}"
    );
    assert!(text.len() <= 4096 && !text.contains("PERSONAL") && !text.contains("123"));
    drop(log);
    let verified = verify(&log_path, Some(&public_key(&key_path))).unwrap();
    assert_eq!(verified.unproven(), None);
}

#[test]
fn anonymous_refusals_past_the_rate_limit_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = key(dir.path());
    let log_path = dir.path().join("audit.jsonl");
    let limits = AuditLimits::default();
    let started = Instant::now();
    {
        let log = AuditLog::open(&log_path, &key_path, 1000)
            .unwrap()
            .with_limits(limits);
        for n in 0..10_000 {
            let record = refusal(
                &format!("user{n}"),
                "invalid_request",
                log.statement("SELECT 1"),
            );
            log.append_refusal(record, Caller::Anonymous).unwrap();
        }
        // An authenticated caller has a budget of its own.
        let own = refusal("alice", "forbidden", log.statement("SELECT 1"));
        assert!(
            log.append_refusal(own, Caller::Subject("alice"))
                .unwrap()
                .is_some()
        );
    } // dropped: the pending count and a final checkpoint
    let elapsed = started.elapsed().as_secs_f64();
    let written = lines_of(&log_path);
    let kind = |r: &Map<String, Value>| r["kind"].as_str().unwrap().to_string();
    let refusals = written
        .iter()
        .filter(|r| kind(r) == "refused" && r["subject"] != json!("alice"))
        .count() as f64;
    assert!(written.iter().any(|r| r["subject"] == json!("alice")));
    let limit = limits.anonymous_refusals;
    let most = f64::from(limit.burst) + f64::from(limit.per_second) * elapsed + 1.0;
    assert!(
        refusals <= most,
        "{refusals} records in {elapsed:.2}s; at most {most}"
    );
    let summaries: Vec<_> = written
        .iter()
        .filter(|r| kind(r) == "refusals_suppressed")
        .collect();
    assert!(
        summaries.len() as f64 <= elapsed + 2.0,
        "{}",
        summaries.len()
    );
    let counted: u64 = summaries.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(refusals as u64 + counted, 10_000);
    assert!(
        summaries.iter().all(|r| r["subject"] == json!("anonymous")
            && r["outcomes"]["invalid_request"] == r["count"])
    );
    let verified = verify(&log_path, Some(&public_key(&key_path))).unwrap();
    assert_eq!(verified.unproven(), None);
    assert_eq!(verified.unsigned_tail, 0);
}

#[test]
fn buckets_refill_and_summaries_come_at_most_once_a_second() {
    let limits = AuditLimits {
        max_statement_bytes: 4096,
        anonymous_refusals: RateLimit {
            per_second: 2,
            burst: 3,
        },
        subject_refusals: RateLimit {
            per_second: 1,
            burst: 1,
        },
    };
    let mut limiter = RefusalLimiter::new(limits);
    let t0 = Instant::now();
    let admitted = (0..10)
        .filter(|_| limiter.admit(Caller::Anonymous, t0, "forbidden"))
        .count();
    assert_eq!(admitted, 3);
    // Not yet a second since the bucket began: nothing due.
    assert!(limiter.take_due(t0).is_empty());
    let half = t0 + Duration::from_millis(500);
    assert!(limiter.admit(Caller::Anonymous, half, "forbidden"));
    assert!(!limiter.admit(Caller::Anonymous, half, "invalid_request"));
    assert!(limiter.take_due(half).is_empty());
    let second = t0 + Duration::from_millis(1000);
    let due = limiter.take_due(second);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].count, 8);
    assert_eq!(
        due[0].outcomes,
        BTreeMap::from([("forbidden".into(), 7), ("invalid_request".into(), 1)])
    );
    // The next is due a second later.
    let more = t0 + Duration::from_millis(1100);
    assert!(limiter.admit(Caller::Anonymous, more, "forbidden"));
    assert!(!limiter.admit(Caller::Anonymous, more, "forbidden"));
    assert!(
        limiter
            .take_due(more + Duration::from_millis(800))
            .is_empty()
    );
    let later = t0 + Duration::from_millis(2000);
    assert_eq!(limiter.take_due(later)[0].count, 1);
    // Subjects are counted apart, and each has its own budget.
    assert!(limiter.admit(Caller::Subject("eve"), t0, "forbidden"));
    assert!(!limiter.admit(Caller::Subject("eve"), t0, "forbidden"));
    assert!(limiter.admit(Caller::Subject("bob"), t0, "forbidden"));
    let pending = limiter.take_all();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].subject, "eve");
}

/// What an attacker with write access can do without the key: drop the checkpoints (and
/// the head file) and recompute the chain.
fn rehash_without_checkpoints(path: &Path) {
    let mut prev = GENESIS;
    let mut out = String::new();
    let kept = lines_of(path)
        .into_iter()
        .filter(|r| r["kind"] != json!("checkpoint"));
    for (n, mut record) in kept.enumerate() {
        record.remove("hash");
        record.insert("seq".into(), json!(n as u64 + 1));
        record.insert("prev".into(), json!(hex::encode(prev)));
        let hash = record_hash(&prev, &record);
        record.insert("hash".into(), json!(hex::encode(hash)));
        out.push_str(&serde_json::to_string(&record).unwrap());
        out.push('\n');
        prev = hash;
    }
    std::fs::write(path, out).unwrap();
    let _ = std::fs::remove_file(head_path(path));
}

#[test]
fn a_log_without_a_signed_checkpoint_is_not_proven() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = key(dir.path());
    let public = public_key(&key_path);
    let log_path = dir.path().join("audit.jsonl");
    {
        let log = AuditLog::open(&log_path, &key_path, 10).unwrap();
        for n in 0..26 {
            log.append(&record(n)).unwrap();
        }
        // While the node runs, records after the last checkpoint are expected.
        let running = verify(&log_path, Some(&public)).unwrap();
        assert_eq!(
            (running.unsigned_tail, running.checkpoint_every),
            (6, Some(10))
        );
        assert_eq!(running.unproven(), None);
    }
    let normal = verify(&log_path, Some(&public)).unwrap();
    assert_eq!(normal.unproven(), None);
    assert_eq!((normal.checkpoints, normal.unsigned_tail), (3, 0));

    rehash_without_checkpoints(&log_path);
    let forged = verify(&log_path, Some(&public)).unwrap();
    assert_eq!((forged.records, forged.checkpoints), (26, 0));
    let why = forged.unproven().expect("not proven");
    assert!(why.contains("no signed checkpoint"), "{why}");
    // Nor does the node continue (and so sign) it.
    let err = AuditLog::open(&log_path, &key_path, 10).unwrap_err();
    assert!(err.to_string().contains("not continued"), "{err}");

    // Records past what the last checkpoint promised are not proven either.
    let tail_path = dir.path().join("tail.jsonl");
    {
        let log = AuditLog::open(&tail_path, &key_path, 5).unwrap();
        for n in 0..5 {
            log.append(&record(n)).unwrap();
        }
    }
    let signed = lines_of(&tail_path);
    let mut prev: [u8; 32] = hex::decode(signed.last().unwrap()["hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let mut text = std::fs::read_to_string(&tail_path).unwrap();
    for n in 0..6u64 {
        let mut forged = record(100 + n);
        forged.insert("seq".into(), json!(signed.len() as u64 + n + 1));
        forged.insert("prev".into(), json!(hex::encode(prev)));
        prev = record_hash(&prev, &forged);
        forged.insert("hash".into(), json!(hex::encode(prev)));
        text.push_str(&serde_json::to_string(&forged).unwrap());
        text.push('\n');
    }
    std::fs::write(&tail_path, text).unwrap();
    let long_tail = verify(&tail_path, Some(&public)).unwrap();
    assert_eq!(
        (long_tail.unsigned_tail, long_tail.checkpoint_every),
        (6, Some(5))
    );
    let why = long_tail.unproven().expect("not proven");
    assert!(why.contains("more than the 5"), "{why}");
}

#[test]
fn detects_changed_removed_and_cut_off_records() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = key(dir.path());
    let log_path = dir.path().join("audit.jsonl");
    {
        let log = AuditLog::open(&log_path, &key_path, 3).unwrap();
        for n in 0..7 {
            log.append(&record(n)).unwrap();
        }
    } // dropped: a final checkpoint
    let pem = std::fs::read_to_string(&key_path).unwrap();
    let public = SigningKey::from_pkcs8_pem(&pem).unwrap().verifying_key();
    let ok = verify(&log_path, Some(&public)).unwrap();
    assert_eq!(ok.records, 7 + 3);
    assert_eq!(ok.checkpoints, 3);
    // Reopening continues the chain.
    {
        let log = AuditLog::open(&log_path, &key_path, 100).unwrap();
        log.append(&record(99)).unwrap();
    }
    // (a checkpoint promising the new interval, the record, a final checkpoint)
    assert_eq!(verify(&log_path, Some(&public)).unwrap().records, 13);

    let original = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let check = |text: String, expect: &str| {
        std::fs::write(&log_path, text).unwrap();
        let err = verify(&log_path, Some(&public)).unwrap_err().to_string();
        assert!(err.contains(expect), "{expect}: {err}");
    };
    check(original.replace("user3", "user4"), "changed");
    let mut removed = lines.clone();
    removed.remove(4);
    check(removed.join("\n") + "\n", "removed");
    check(lines[..6].join("\n") + "\n", "cut off");
    // Another key's signature does not verify.
    std::fs::write(&log_path, &original).unwrap();
    let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let err = verify(&log_path, Some(&other)).unwrap_err().to_string();
    assert!(err.contains("signature"), "{err}");
    // A damaged log is not extended.
    check(original.replace("user3", "user4"), "changed");
    assert!(AuditLog::open(&log_path, &key_path, 3).is_err());
}

/// The typed records write the bytes the log held when they were built as JSON maps: the same
/// fields in the same order (the chain and `polder audit verify` depend on them).
#[test]
fn records_keep_their_fields_and_order() {
    let raw = DatasetAccess {
        dataset: "utrecht.public.reports".into(),
        access: record::Access::Raw {
            rule: Some(2),
            denied_columns: vec!["reporter".into()],
            masked_columns: vec!["postcode".into()],
            row_filter: Some("city = $org".into()),
        },
        personal: true,
    };
    let public = DatasetAccess {
        access: record::Access::Raw {
            rule: None,
            denied_columns: vec![],
            masked_columns: vec![],
            row_filter: None,
        },
        ..raw.clone()
    };
    let aggregate = DatasetAccess {
        access: record::Access::Aggregate {
            rule: 1,
            min_group_size: 5,
            row_filter: None,
        },
        ..raw.clone()
    };
    let refused = DatasetAccess {
        access: record::Access::Refused,
        personal: false,
        ..raw.clone()
    };
    let statement = Statement::of("SELECT 'x'", 4096);
    let query = Record::Refused(QueryRecord {
        time: "t".into(),
        subject: "alice".into(),
        purpose: None,
        datasets: vec![raw, public, aggregate, refused],
        statement: Statement {
            statement_truncated: true,
            ..statement.clone()
        },
        outcome: Some("forbidden".into()),
    });
    let expected = json!({
        "kind": "refused", "time": "t", "subject": "alice", "purpose": null,
        "datasets": [
            {"dataset": "utrecht.public.reports", "access": "raw", "rule": 2,
             "denied_columns": ["reporter"], "masked_columns": ["postcode"],
             "row_filter": "city = $org", "personal": true},
            {"dataset": "utrecht.public.reports", "access": "raw", "rule": null,
             "denied_columns": [], "masked_columns": [], "row_filter": null, "personal": true},
            {"dataset": "utrecht.public.reports", "access": "aggregate", "rule": 1,
             "min_group_size": 5, "row_filter": null, "personal": true},
            {"dataset": "utrecht.public.reports", "access": "refused", "personal": false},
        ],
        "statement": "SELECT ?", "statement_sha256": statement.statement_sha256,
        "statement_bytes": 10, "statement_truncated": true, "outcome": "forbidden",
    });
    assert_eq!(text(&query), text(&expected));

    let end = Record::QueryEnd(QueryEnd {
        time: "t".into(),
        query: None,
        outcome: "ok".into(),
        rows_out: 3,
        groups_suppressed: Some(1),
    });
    let expected = json!({"kind": "query_end", "time": "t", "query": null, "outcome": "ok",
        "rows_out": 3, "groups_suppressed": 1});
    assert_eq!(text(&end), text(&expected));
    // Without the optional fields, they are absent (not null).
    let plain = Record::Query(QueryRecord {
        outcome: None,
        datasets: vec![],
        statement,
        ..match query {
            Record::Refused(q) => q,
            _ => unreachable!(),
        }
    });
    let written = text(&plain);
    assert!(!written.contains("outcome") && !written.contains("statement_truncated"));
    assert!(
        written.starts_with(r#"{"kind":"query","time":"t""#),
        "{written}"
    );
}

/// A record as the log writes it: through a JSON map, so in the map's (insertion) order.
fn text(record: &impl serde::Serialize) -> String {
    serde_json::to_string(&serde_json::to_value(record).unwrap()).unwrap()
}

#[test]
fn a_verification_key_file_that_is_no_jwks_says_which_way() {
    use crate::error::AuditKeyError;
    let err = |text: &str| verifying_key_from_jwks(text).unwrap_err();
    assert!(matches!(err("{\"keys\": ["), AuditKeyError::NotJson(_)));
    let shape = err(r#"{"keys": "ed25519"}"#);
    assert!(matches!(shape, AuditKeyError::NotJwks(_)), "{shape}");
    assert!(shape.to_string().starts_with("not a JWKS: "), "{shape}");
    let rsa = r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#;
    assert!(matches!(err(rsa), AuditKeyError::NoEd25519Key));
}
