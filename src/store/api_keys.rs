//! API keys: stored as SHA-256 hashes, each with a tenant, scopes, a name, an optional
//! expiry and the time it was last used.

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::StoreResult;

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

const COLUMNS: &str =
    "id, tenant, name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at";

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<DateTime<Utc>>,
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Creates an unnamed key that never expires; returns its row and the key itself.
pub async fn create(
    pool: &PgPool,
    tenant: &str,
    scopes: &[String],
) -> StoreResult<(ApiKeyRow, String)> {
    create_key(
        pool,
        &NewKey {
            tenant,
            name: "",
            scopes,
            expires_at: None,
        },
    )
    .await
}

/// Creates a key and returns its row and the key itself (shown once, never stored).
pub async fn create_key(pool: &PgPool, new: &NewKey<'_>) -> StoreResult<(ApiKeyRow, String)> {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 40);
    let key = format!("pgw_{secret}");
    let prefix = key[..12].to_owned();
    let row = sqlx::query_as::<_, ApiKeyRow>(&format!(
        "INSERT INTO api_keys (id, tenant, name, prefix, key_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(new.tenant)
    .bind(new.name)
    .bind(&prefix)
    .bind(hash_key(&key))
    .bind(new.scopes)
    .bind(new.expires_at)
    .fetch_one(pool)
    .await?;
    Ok((row, key))
}

/// The not-revoked key with this value, if any (expired ones too: the caller says so).
pub async fn find_live(pool: &PgPool, key: &str) -> StoreResult<Option<ApiKeyRow>> {
    Ok(sqlx::query_as::<_, ApiKeyRow>(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
    ))
    .bind(hash_key(key))
    .fetch_optional(pool)
    .await?)
}

/// Records a use of the key (callers do it at most about once a minute per key).
pub async fn touch(pool: &PgPool, id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Every key, or one tenant's, oldest first.
pub async fn list(pool: &PgPool) -> StoreResult<Vec<ApiKeyRow>> {
    list_for(pool, None).await
}

pub async fn list_for(pool: &PgPool, tenant: Option<&str>) -> StoreResult<Vec<ApiKeyRow>> {
    Ok(sqlx::query_as::<_, ApiKeyRow>(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, id: Uuid) -> StoreResult<Option<ApiKeyRow>> {
    Ok(
        sqlx::query_as::<_, ApiKeyRow>(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Revokes a key; false when no live key has this id.
pub async fn revoke(pool: &PgPool, id: Uuid) -> StoreResult<bool> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}
