//! Re-sealing the secrets at rest (`secrets_at_rest`): printer secrets and webhook signing
//! secrets are brought under the active key, row by row, each in a short transaction that
//! locks only that row. Used by `print-gateway secrets rotate` (every value not sealed with
//! the active key) and at start (clear values only, left by a gateway without keys).

use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, StoreResult};
use crate::secrets_at_rest::{self, Keyring};

/// Which stored values to re-seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Every value not sealed with the active key (rotation). A value that cannot be
    /// opened is an error.
    All,
    /// Clear values only (the first start with keys); sealed ones are left as they are.
    ClearOnly,
}

/// How many rows were re-sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    pub printers: u64,
    pub webhook_endpoints: u64,
}

/// The prefix every value `mode` leaves alone starts with.
fn kept_prefix(keyring: &Keyring, mode: Reseal) -> String {
    match (mode, keyring.active_key_id()) {
        (Reseal::All, Some(active)) => format!("{}{active}:", secrets_at_rest::PREFIX),
        _ => secrets_at_rest::PREFIX.to_owned(),
    }
}

/// Re-seals the stored secrets `mode` selects under `keyring`'s active key. Does nothing
/// without a key. Only rows with a value to re-seal are visited.
pub async fn reseal(pool: &PgPool, keyring: &Keyring, mode: Reseal) -> StoreResult<Resealed> {
    let mut done = Resealed::default();
    if !keyring.is_configured() {
        return Ok(done);
    }
    let kept = kept_prefix(keyring, mode);
    let printer_ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM printers p WHERE EXISTS (
             SELECT 1 FROM jsonb_each(CASE jsonb_typeof(p.secrets) WHEN 'object' THEN p.secrets ELSE '{}' END) e
             WHERE jsonb_typeof(e.value) = 'string' AND NOT starts_with(e.value #>> '{}', $1))
         ORDER BY id",
    )
    .bind(&kept)
    .fetch_all(pool)
    .await?;
    for id in printer_ids {
        if reseal_printer(pool, keyring, &kept, &id).await? {
            done.printers += 1;
        }
    }
    let endpoint_ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM webhook_endpoints
         WHERE NOT starts_with(secret, $1) OR NOT starts_with(previous_secret, $1) ORDER BY id",
    )
    .bind(&kept)
    .fetch_all(pool)
    .await?;
    for id in endpoint_ids {
        if reseal_endpoint(pool, keyring, &kept, id).await? {
            done.webhook_endpoints += 1;
        }
    }
    Ok(done)
}

async fn reseal_printer(
    pool: &PgPool,
    keyring: &Keyring,
    kept: &str,
    id: &str,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let Some(stored): Option<Value> =
        sqlx::query_scalar("SELECT secrets FROM printers WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(false);
    };
    let Some(map) = stored.as_object() else {
        return Ok(false);
    };
    let mut changed = false;
    let mut next = serde_json::Map::new();
    for (name, value) in map {
        let Some(text) = value.as_str().filter(|t| !t.starts_with(kept)) else {
            next.insert(name.clone(), value.clone());
            continue;
        };
        let context = secrets_at_rest::printer_context(id, name);
        let plain = keyring.open(&context, text).map_err(|err| {
            StoreError::Corrupt(format!("printer `{id}`: its secret `{name}` {err}"))
        })?;
        next.insert(
            name.clone(),
            Value::String(keyring.seal(&context, plain.expose_secret())),
        );
        changed = true;
    }
    if changed {
        sqlx::query("UPDATE printers SET secrets = $2 WHERE id = $1")
            .bind(id)
            .bind(Value::Object(next))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

async fn reseal_endpoint(
    pool: &PgPool,
    keyring: &Keyring,
    kept: &str,
    id: Uuid,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let Some((secret, previous)): Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(false);
    };
    let context = secrets_at_rest::endpoint_context(id);
    let reseal = |stored: &str| -> StoreResult<Option<String>> {
        if stored.starts_with(kept) {
            return Ok(None);
        }
        let plain = keyring.open(&context, stored).map_err(|err| {
            StoreError::Corrupt(format!("webhook endpoint {id}: its signing secret {err}"))
        })?;
        Ok(Some(keyring.seal(&context, plain.expose_secret())))
    };
    let new_secret = reseal(&secret)?;
    let new_previous = previous.as_deref().map(reseal).transpose()?.flatten();
    let changed = new_secret.is_some() || new_previous.is_some();
    if changed {
        sqlx::query("UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1")
            .bind(id)
            .bind(new_secret.unwrap_or(secret))
            .bind(new_previous.or(previous))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(changed)
}
