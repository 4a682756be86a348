//! Secrets at rest: printer secrets (`printers.secrets` values) and webhook signing secrets
//! (`webhook_endpoints.secret`, `previous_secret`) are sealed with XChaCha20-Poly1305 under
//! a key of `SECRETS_KEYS` before they reach Postgres, and opened only in memory when a
//! vendor call or a delivery needs them.
//!
//! A sealed value is the text `enc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`; the
//! associated data binds it to its row and field (`printer:<id>:<name>`,
//! `webhook_endpoint:<id>`), so a value copied to another row does not open. The key id
//! says which key opens it, so keys rotate: add a key, make it active
//! (`SECRETS_ACTIVE_KEY`), run `print-gateway secrets rotate`, then drop the old one.
//!
//! A value without the prefix is clear (written before encryption was configured, or by a
//! gateway without keys): it still works, and is sealed by the next start with keys or by
//! `secrets rotate`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde_json::Value;

/// The prefix of a sealed value.
pub const PREFIX: &str = "enc:v1:";

const NONCE_LEN: usize = 24;

/// The key the demo seals with when SECRETS_KEYS is not set (its database is throw-away;
/// never use it elsewhere).
const DEMO_KEY: [u8; 32] = *b"print-gateway-demo-secrets-key!!";

/// `SECRETS_KEYS` for the demo: its fixed key, id `demo`.
pub fn demo_keys_setting() -> String {
    format!("demo:{}", STANDARD.encode(DEMO_KEY))
}

/// Why a sealed value could not be opened (never contains the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "it is sealed with key `{0}`, which is not in SECRETS_KEYS (add it back, or register the secret again)"
    )]
    UnknownKey(String),
    #[error("it is sealed with key `{0}` but does not open with it (altered, or another row's)")]
    Corrupt(String),
    #[error("it is not a well-formed sealed value")]
    Malformed,
}

/// A printer secret that cannot be opened; names the secret, never shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its secret `{name}` cannot be read: {reason}")]
pub struct UnreadableSecret {
    pub name: String,
    pub reason: OpenError,
}

/// `SECRETS_KEYS` or `SECRETS_ACTIVE_KEY` that cannot be used; names the variable, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidKeys(String);

impl From<String> for InvalidKeys {
    fn from(message: String) -> Self {
        InvalidKeys(message)
    }
}

impl From<&str> for InvalidKeys {
    fn from(message: &str) -> Self {
        InvalidKeys(message.to_owned())
    }
}

/// The keys from `SECRETS_KEYS`, and the one new values are sealed with.
pub struct Keyring {
    keys: Vec<(String, SecretBox<[u8; 32]>)>,
    active: Option<usize>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("active", &self.active_key_id())
            .finish()
    }
}

impl Keyring {
    /// No keys: new values are stored in clear (a warning at start says so).
    pub fn none() -> Keyring {
        Keyring {
            keys: Vec::new(),
            active: None,
        }
    }

    /// Parses `SECRETS_KEYS` (`id:base64,id:base64`, each key 32 bytes) and
    /// `SECRETS_ACTIVE_KEY` (default: the first listed). Errors name the variable, never a key.
    pub fn parse(keys: Option<&str>, active: Option<&str>) -> Result<Keyring, InvalidKeys> {
        let mut ring = Keyring::none();
        for entry in keys.unwrap_or("").split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let Some((id, encoded)) = entry.split_once(':') else {
                return Err("SECRETS_KEYS: each entry is `KEY_ID:BASE64_KEY` (comma-separated), e.g. `k1:<output of openssl rand -base64 32>`".into());
            };
            let id = id.trim();
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "SECRETS_KEYS: key id `{}` must be 1-32 characters of A-Z, a-z, 0-9, - and _",
                    id.chars().take(40).collect::<String>()
                )
                .into());
            }
            if ring.keys.iter().any(|(k, _)| k == id) {
                return Err(format!("SECRETS_KEYS: key id `{id}` appears twice").into());
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("SECRETS_KEYS: the key `{id}` is not valid base64"))?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                format!("SECRETS_KEYS: the key `{id}` must be 32 bytes (openssl rand -base64 32)")
            })?;
            ring.keys
                .push((id.to_owned(), SecretBox::new(Box::new(key))));
        }
        ring.active = match active.map(str::trim).filter(|a| !a.is_empty()) {
            Some(active) => Some(
                ring.keys
                    .iter()
                    .position(|(id, _)| id == active)
                    .ok_or_else(|| {
                        format!("SECRETS_ACTIVE_KEY `{active}` is not a key id of SECRETS_KEYS")
                    })?,
            ),
            None if ring.keys.is_empty() => None,
            None => Some(0),
        };
        Ok(ring)
    }

    /// Whether values are sealed (a key is configured).
    pub fn is_configured(&self) -> bool {
        self.active.is_some()
    }

    /// The id of the key new values are sealed with.
    pub fn active_key_id(&self) -> Option<&str> {
        self.active.map(|i| self.keys[i].0.as_str())
    }

    fn cipher(&self, id: &str) -> Option<XChaCha20Poly1305> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| XChaCha20Poly1305::new(Key::from_slice(key.expose_secret())))
    }

    /// Seals `plain` for the field named by `context`; with no key configured, returns it
    /// as it is (clear).
    pub fn seal(&self, context: &str, plain: &str) -> String {
        let Some(active) = self.active else {
            return plain.to_owned();
        };
        let (id, key) = &self.keys[active];
        let cipher = XChaCha20Poly1305::new(Key::from_slice(key.expose_secret()));
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 seals any length we store"));
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{id}:{}", STANDARD.encode(out))
    }

    /// Opens a stored value (a clear one is returned as it is).
    pub fn open(&self, context: &str, stored: &str) -> Result<SecretString, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(SecretString::from(stored));
        };
        let (id, encoded) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        let cipher = self
            .cipher(id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let bytes = STANDARD.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Corrupt(id.to_owned()))?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| OpenError::Corrupt(id.to_owned()))
    }

    /// Whether a stored value is as this keyring would write it: sealed with the active
    /// key, or clear when no key is configured.
    pub fn is_current(&self, stored: &str) -> bool {
        match self.active_key_id() {
            Some(active) => stored
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(id, _)| id == active),
            None => !is_sealed(stored),
        }
    }

    /// Seals a printer's secrets object (`{"device_key": "…"}`) value by value; names stay
    /// readable (the API lists them). A value that is not a string is sealed as its JSON.
    pub fn seal_printer_secrets(&self, printer_id: &str, plain: &Value) -> Value {
        let Some(map) = plain.as_object() else {
            return plain.clone();
        };
        Value::Object(
            map.iter()
                .map(|(name, value)| {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let sealed = self.seal(&printer_context(printer_id, name), &text);
                    (name.clone(), Value::String(sealed))
                })
                .collect(),
        )
    }

    /// Opens a printer's stored secrets, in memory only.
    pub fn open_printer_secrets(
        &self,
        printer_id: &str,
        stored: &Value,
    ) -> Result<BTreeMap<String, SecretString>, UnreadableSecret> {
        let mut out = BTreeMap::new();
        if let Some(map) = stored.as_object() {
            for (name, value) in map {
                let opened = match value {
                    Value::String(s) => {
                        self.open(&printer_context(printer_id, name), s)
                            .map_err(|reason| UnreadableSecret {
                                name: name.clone(),
                                reason,
                            })?
                    }
                    other => SecretString::from(other.to_string()),
                };
                out.insert(name.clone(), opened);
            }
        }
        Ok(out)
    }

    /// Opens a printer's stored secrets back into the JSON the operator gave (for merging
    /// a PATCH and checking it with the vendor; never stored or shown like this).
    pub fn open_printer_secrets_json(
        &self,
        printer_id: &str,
        stored: &Value,
    ) -> Result<Value, UnreadableSecret> {
        Ok(Value::Object(
            self.open_printer_secrets(printer_id, stored)?
                .into_iter()
                .map(|(k, v)| (k, Value::String(v.expose_secret().to_owned())))
                .collect(),
        ))
    }

    /// Whether every value of a printer's stored secrets is current (see [`Self::is_current`]).
    pub fn printer_secrets_current(&self, stored: &Value) -> bool {
        stored.as_object().is_none_or(|m| {
            m.values()
                .all(|v| v.as_str().is_none_or(|s| self.is_current(s)))
        })
    }
}

/// Whether a stored value is sealed (rather than clear).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The associated data of a printer secret.
pub fn printer_context(printer_id: &str, name: &str) -> String {
    format!("printer:{printer_id}:{name}")
}

/// The associated data of a webhook endpoint's signing secrets.
pub fn endpoint_context(endpoint_id: uuid::Uuid) -> String {
    format!("webhook_endpoint:{endpoint_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &str, active: Option<&str>) -> Keyring {
        Keyring::parse(Some(keys), active).expect("valid keys")
    }

    const K1: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const K2: &str = "k2:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn a_sealed_value_opens_with_its_key_and_context_only() {
        let one = ring(K1, None);
        let sealed = one.seal("printer:p1:device_key", "hunter2");
        assert!(sealed.starts_with("enc:v1:k1:"));
        assert!(!sealed.contains("hunter2"));
        let opened = one.open("printer:p1:device_key", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "hunter2");
        assert!(matches!(
            one.open("printer:p2:device_key", &sealed),
            Err(OpenError::Corrupt(_))
        ));
        let two = ring(K2, None);
        assert_eq!(
            two.open("printer:p1:device_key", &sealed).unwrap_err(),
            OpenError::UnknownKey("k1".into())
        );
        // both keys, k2 active: old values still open, new ones use k2
        let both = ring(&format!("{K1},{K2}"), Some("k2"));
        assert_eq!(
            both.open("printer:p1:device_key", &sealed)
                .unwrap()
                .expose_secret(),
            "hunter2"
        );
        assert!(!both.is_current(&sealed));
        assert!(both.is_current(&both.seal("x", "y")));
    }

    #[test]
    fn clear_values_still_open_and_no_key_stores_clear() {
        let none = Keyring::none();
        assert_eq!(none.seal("c", "plain"), "plain");
        assert!(none.is_current("plain"));
        assert_eq!(
            ring(K1, None).open("c", "plain").unwrap().expose_secret(),
            "plain"
        );
        assert!(!ring(K1, None).is_current("plain"));
    }

    #[test]
    fn bad_configuration_names_the_variable_never_the_key() {
        for (keys, active) in [
            ("k1", None),
            ("k1:not-base64!", None),
            ("k1:AAAA", None),
            ("bad id:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", None),
            (K1, Some("k9")),
            (&format!("{K1},{K1}"), None),
        ] {
            let err = Keyring::parse(Some(keys), active).unwrap_err().to_string();
            assert!(err.starts_with("SECRETS_"), "{err}");
            assert!(!err.contains("AAAAAAAA"), "{err}");
        }
        assert!(!Keyring::parse(None, None).unwrap().is_configured());
    }

    #[test]
    fn printer_secrets_keep_their_names_and_hide_their_values() {
        let one = ring(K1, None);
        let sealed = one.seal_printer_secrets("p1", &serde_json::json!({"device_key": "abc"}));
        assert!(sealed["device_key"].as_str().unwrap().starts_with(PREFIX));
        assert!(one.printer_secrets_current(&sealed));
        let opened = one.open_printer_secrets("p1", &sealed).unwrap();
        assert_eq!(opened["device_key"].expose_secret(), "abc");
        assert!(one.open_printer_secrets("p2", &sealed).is_err());
    }
}
