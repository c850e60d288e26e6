//! What the audit log keeps of a statement: its shape without literals, bounded in size and
//! in the work it takes, and the hash of the whole.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use sha2::{Digest, Sha256};

/// A statement's shape: its literals replaced by `?`, comments dropped, whitespace collapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    /// At most the bytes asked for.
    pub text: String,
    /// The text is a prefix: the statement goes on.
    pub truncated: bool,
}

/// How many bytes of a statement are read to fill `max_bytes` of stripped text (long literals
/// shrink to `?`); the rest is never looked at.
const READ_PER_KEPT_BYTE: usize = 4;

/// The statement with every literal replaced by `?`: its shape, never its values, in at most
/// `max_bytes` (cut at a character boundary).
///
/// Only a prefix of `READ_PER_KEPT_BYTE * max_bytes` bytes is tokenized, so the work is
/// bounded however long the statement. A literal cut by that prefix does not tokenize and is
/// left out with all that follows it, as is everything from a place where the statement does
/// not tokenize: only whole tokens reach the text, so never a literal's content.
pub fn strip_literals(sql: &str, max_bytes: usize) -> Stripped {
    let read = floor_char_boundary(sql, max_bytes.saturating_mul(READ_PER_KEPT_BYTE));
    let prefix = &sql[..read];
    let mut tokens = Vec::new();
    let complete = Tokenizer::new(&GenericDialect {}, prefix)
        .tokenize_with_location_into_buf(&mut tokens)
        .is_ok();
    let mut out = String::new();
    let mut last_space = false;
    for token in tokens {
        let text = match token.token {
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::DollarQuotedString(_) => "?".to_string(),
            Token::Whitespace(_) => {
                if !last_space {
                    out.push(' ');
                }
                last_space = true;
                continue;
            }
            other => other.to_string(),
        };
        last_space = false;
        out.push_str(&text);
        if out.len() > max_bytes {
            break;
        }
    }
    let mut text = out.trim().to_string();
    let mut truncated = read < sql.len();
    if !complete && !truncated {
        text.push_str(" <does not tokenize from here>");
    }
    if text.len() > max_bytes {
        text.truncate(floor_char_boundary(&text, max_bytes));
        truncated = true;
    }
    Stripped { text, truncated }
}

/// The largest index at most `index` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    (0..=index)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

/// SHA-256 of the full statement, hex.
pub fn statement_hash(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}
