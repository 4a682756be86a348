//! API keys: stored as SHA-256 hashes, each with a tenant and scopes.

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
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Creates a key and returns its row and the key itself (shown once, never stored).
pub async fn create(
    pool: &PgPool,
    tenant: &str,
    scopes: &[String],
) -> StoreResult<(ApiKeyRow, String)> {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 40);
    let key = format!("pgw_{secret}");
    let prefix = key[..12].to_owned();
    let row = sqlx::query_as::<_, ApiKeyRow>(
        "INSERT INTO api_keys (id, tenant, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, tenant, prefix, scopes, created_at, revoked_at",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(&prefix)
    .bind(hash_key(&key))
    .bind(scopes)
    .fetch_one(pool)
    .await?;
    Ok((row, key))
}

/// The live (not revoked) key with this value, if any.
pub async fn find_live(pool: &PgPool, key: &str) -> StoreResult<Option<ApiKeyRow>> {
    Ok(sqlx::query_as::<_, ApiKeyRow>(
        "SELECT id, tenant, prefix, scopes, created_at, revoked_at FROM api_keys
         WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_key(key))
    .fetch_optional(pool)
    .await?)
}

pub async fn list(pool: &PgPool) -> StoreResult<Vec<ApiKeyRow>> {
    Ok(sqlx::query_as::<_, ApiKeyRow>(
        "SELECT id, tenant, prefix, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at",
    )
    .fetch_all(pool)
    .await?)
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
