//! The one rule for the names a node serves under: node, table and peer names become SQL
//! identifiers (`<node>.public.<table>`), so they must never need quoting.
//!
//! ```
//! use polder_connectors::identifier::{self, MAX_LEN};
//!
//! assert!(identifier::check("den_haag").is_ok());
//! assert!(identifier::check("Den Haag").is_err());
//! assert!(identifier::check(&"a".repeat(MAX_LEN + 1)).is_err());
//! ```

/// The longest identifier, in bytes: PostgreSQL's limit (`NAMEDATALEN - 1`), so that a name
/// fits every client and every system a node's tables are copied into.
pub const MAX_LEN: usize = 63;

/// A name that is not a plain lower-case SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' must be a lower-case SQL identifier: 1-63 characters of a-z, 0-9 and _, not starting \
     with a digit"
)]
pub struct InvalidIdentifier(pub String);

/// Checks that `name` is 1 to [`MAX_LEN`] characters of `a-z`, `0-9` and `_`, not starting with
/// a digit.
pub fn check(name: &str) -> Result<(), InvalidIdentifier> {
    let mut chars = name.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && name.len() <= MAX_LEN {
        Ok(())
    } else {
        Err(InvalidIdentifier(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lower_case_names_pass() {
        for name in ["a", "_", "den_haag", "gm0363", "_x1"] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn anything_else_fails() {
        for name in [
            "", "1a", "Den_Haag", "den haag", "den-haag", "ü", "a.b", "\"a\"",
        ] {
            assert!(check(name).is_err(), "{name}");
        }
    }

    #[test]
    fn the_length_is_capped_at_63() {
        assert_eq!(check(&"a".repeat(MAX_LEN)), Ok(()));
        let long = "a".repeat(MAX_LEN + 1);
        assert_eq!(check(&long), Err(InvalidIdentifier(long.clone())));
    }

    #[test]
    fn the_message_names_the_rule() {
        let message = check("Utrecht").unwrap_err().to_string();
        assert!(message.contains("'Utrecht'"), "{message}");
        assert!(message.contains("lower-case SQL identifier"), "{message}");
    }
}
