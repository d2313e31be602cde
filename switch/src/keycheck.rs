//! Key check values (KCVs): a wrong key is caught before it does harm.
//!
//! A wrong `LSW_PAN_TOKEN_KEY` would otherwise be accepted silently: every enrolled card would
//! be answered `14` and cards issued meanwhile would be enrolled a second time under the wrong
//! key. So the check value of each key (`PanTokenKey::check_value`, `Kek::check_value`; 3
//! bytes of a one-way function, never the key) is recorded in `key_checks` the first time the
//! key is used on a database, and `serve`, `import` and `lsw-settle` compare the keys they are
//! given with it before they touch anything: a mismatch stops them with a message naming the
//! key, and nothing is changed.
//!
//! [`verify`] only reads; [`record`] stores the values not stored yet, after the command that
//! used the keys succeeded (a wrong KEK on a database recorded before key checks existed is
//! caught by its sealed TMKs not opening, and must not be recorded first).

use crate::config::ConfigError;
use crate::domain::{Kek, PanTokenKey, UnixMillis};
use crate::store::Pool;

/// The variable naming the key-encryption key.
pub const KEK: &str = "LSW_KEK";
/// The variable naming the PAN token key.
pub const PAN_TOKEN_KEY: &str = "LSW_PAN_TOKEN_KEY";

/// The keys a command was given (either may be absent for `lsw-settle`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Keys<'a> {
    /// The key-encryption key.
    pub kek: Option<&'a Kek>,
    /// The PAN token key.
    pub pan_key: Option<&'a PanTokenKey>,
}

impl<'a> Keys<'a> {
    /// Both keys.
    pub fn both(kek: &'a Kek, pan_key: &'a PanTokenKey) -> Keys<'a> {
        Keys {
            kek: Some(kek),
            pan_key: Some(pan_key),
        }
    }

    /// (variable, check value) of each key given.
    fn values(&self) -> Vec<(&'static str, String)> {
        let mut values = Vec::with_capacity(2);
        if let Some(kek) = self.kek {
            values.push((KEK, kek.check_value()));
        }
        if let Some(pan_key) = self.pan_key {
            values.push((PAN_TOKEN_KEY, pan_key.check_value()));
        }
        values
    }
}

/// Why the keys were refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// A key differs from the one this database was set up with.
    #[error(
        "{name} is not the key this database was set up with: its key check value is \
         {given}, the database's is {stored}. Nothing was changed; start with the right {name} \
         (docs/config.md, \"Key check values\")"
    )]
    Mismatch {
        /// The key's variable.
        name: &'static str,
        /// The database's check value.
        stored: String,
        /// The given key's check value.
        given: String,
    },
    /// The check values could not be read or written.
    #[error("cannot read or record the key check values: {0}")]
    Store(#[from] sqlx::Error),
}

/// Compares each key given with its recorded check value; a key with none recorded passes.
///
/// # Errors
/// [`KeyCheckError::Mismatch`] naming the first key that differs.
pub async fn verify(pool: &Pool, keys: Keys<'_>) -> Result<(), KeyCheckError> {
    for (name, given) in keys.values() {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT check_value FROM key_checks WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
        match stored {
            Some(stored) if stored != given => {
                return Err(KeyCheckError::Mismatch {
                    name,
                    stored,
                    given,
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records the check value of each key given that has none yet, then verifies them all (so a
/// process racing this one with another key is caught).
///
/// # Errors
/// As [`verify`].
pub async fn record(pool: &Pool, keys: Keys<'_>, now: UnixMillis) -> Result<(), KeyCheckError> {
    for (name, value) in keys.values() {
        sqlx::query(
            "INSERT INTO key_checks (name, check_value, recorded_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .bind(now.get())
        .execute(pool)
        .await?;
    }
    verify(pool, keys).await
}

/// The keys `var` names (each from its variable or the file its `_FILE` variable names), or
/// `None` for one that is not set: for tools that need no key but check those they are given.
///
/// # Errors
/// [`ConfigError::Secret`] for a key that is set but unreadable or not 32 bytes of hex.
pub fn optional_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<(Option<Kek>, Option<PanTokenKey>), ConfigError> {
    let kek = optional_key(&var, KEK, "LSW_KEK_FILE")?
        .map(|bytes| Kek::from_slice(&bytes))
        .transpose()
        .map_err(|_| ConfigError::Secret {
            name: KEK,
            message: "must be 32 bytes",
        })?;
    let pan_key = optional_key(&var, PAN_TOKEN_KEY, "LSW_PAN_TOKEN_KEY_FILE")?
        .map(|bytes| PanTokenKey::from_slice(&bytes))
        .transpose()
        .map_err(|_| ConfigError::Secret {
            name: PAN_TOKEN_KEY,
            message: "must be 32 bytes",
        })?;
    Ok((kek, pan_key))
}

fn optional_key(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    file: &'static str,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let text = match (var(name), var(file)) {
        (Some(value), _) => value,
        (None, Some(path)) => std::fs::read_to_string(&path).map_err(|_| ConfigError::Secret {
            name: file,
            message: "file cannot be read",
        })?,
        (None, None) => return Ok(None),
    };
    hex::decode(text.trim())
        .map(Some)
        .map_err(|_| ConfigError::Secret {
            name,
            message: "not hex",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_tell_keys_apart_and_hide_them() {
        let a = PanTokenKey::from_bytes([0x22; 32]);
        let b = PanTokenKey::from_bytes([0x23; 32]);
        assert_eq!(a.check_value().len(), 6);
        assert_eq!(
            a.check_value(),
            PanTokenKey::from_bytes([0x22; 32]).check_value()
        );
        assert_ne!(a.check_value(), b.check_value());
        let k = Kek::from_bytes([0x11; 32]);
        assert_ne!(k.check_value(), Kek::from_bytes([0x12; 32]).check_value());
        assert!(!k.check_value().contains("1111"));
    }

    #[test]
    fn the_kek_check_value_is_the_custodians_aes_one() {
        // AES-256 of a zero block under the all-zero key begins DC 95 C0 (FIPS-197 style
        // known answer, as an HSM prints it).
        assert_eq!(Kek::from_bytes([0; 32]).check_value(), "DC95C0");
    }
}
