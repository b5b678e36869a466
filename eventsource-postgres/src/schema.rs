//! The store's schema name: validated once, then quoted wherever SQL names it.

use std::fmt;

use eventsource_core::StoreError;

/// A validated PostgreSQL schema name for the store's tables.
///
/// Only lower-case ASCII letters, digits and `_` are accepted, starting with a letter or `_`,
/// at most 63 bytes, and not starting with `pg_` (reserved by PostgreSQL). Such a name needs no
/// escaping, and the store still double-quotes it wherever it appears in SQL.
///
/// ```
/// use eventsource_postgres::PgSchema;
/// assert!(PgSchema::new("eventsource").is_ok());
/// assert!(PgSchema::new("x; DROP TABLE y").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PgSchema(String);

impl PgSchema {
    /// The default schema, `eventsource`.
    pub const DEFAULT: &'static str = "eventsource";

    /// Validates `name`; a rejected name is [`StoreError::Config`].
    pub fn new(name: &str) -> Result<Self, StoreError> {
        let valid_start = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let valid_chars = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_start || !valid_chars || name.len() > 63 || name.starts_with("pg_") {
            return Err(StoreError::Config(format!(
                "invalid schema name {:?}: use 1 to 63 lower-case ASCII letters, digits and `_`, \
                 starting with a letter or `_` and not with `pg_`",
                name.chars().take(80).collect::<String>()
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier.
    pub(crate) fn quoted(&self) -> String {
        // Validation admits no `"`, so wrapping is a complete quoting.
        format!("\"{}\"", self.0)
    }
}

impl Default for PgSchema {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for PgSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_that_need_quoting_or_inject_sql_are_rejected() {
        for bad in [
            "",
            "x; DROP TABLE y",
            "Upper",
            "a\"b",
            "1abc",
            "pg_catalog",
            "with space",
            "é",
            &"a".repeat(64),
        ] {
            assert!(PgSchema::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["eventsource", "_x", "t_123", &"a".repeat(63)] {
            assert_eq!(PgSchema::new(good).unwrap().as_str(), good);
        }
    }
}
