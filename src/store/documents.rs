//! Documents: the bytes (or URL) a job prints, stored with the job in one transaction.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{DocumentKind, DocumentType};

/// A document ready to be stored.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kind: DocumentKind,
    pub doc_type: Option<DocumentType>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub url: Option<String>,
    pub content: Option<Bytes>,
}

impl NewDocument {
    pub fn size(&self) -> usize {
        self.content.as_ref().map_or(0, Bytes::len)
    }

    pub fn sha256(&self) -> Option<Vec<u8>> {
        self.content.as_ref().map(|c| Sha256::digest(c).to_vec())
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct DocumentRow {
    pub id: Uuid,
    pub kind: String,
    pub doc_type: Option<String>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub url: Option<String>,
    pub size_bytes: i64,
    pub sha256: Option<Vec<u8>>,
}

pub async fn insert(conn: &mut PgConnection, doc: &NewDocument) -> StoreResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO documents (id, kind, doc_type, content_type, filename, url, size_bytes, sha256, content)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(doc.kind.as_str())
    .bind(doc.doc_type.map(|t| t.extension()))
    .bind(&doc.content_type)
    .bind(&doc.filename)
    .bind(&doc.url)
    .bind(doc.size() as i64)
    .bind(doc.sha256())
    .bind(doc.content.as_deref())
    .execute(conn)
    .await?;
    Ok(id)
}

/// The columns of [`DocumentRow`] (metadata, not the bytes).
const COLUMNS: &str = "id, kind, doc_type, content_type, filename, url, size_bytes, sha256";

/// The documents of `ids` that exist (metadata only, as [`get`]).
pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> StoreResult<Vec<DocumentRow>> {
    Ok(sqlx::query_as::<_, DocumentRow>(&format!(
        "SELECT {COLUMNS} FROM documents WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, id: Uuid) -> StoreResult<Option<DocumentRow>> {
    Ok(
        sqlx::query_as::<_, DocumentRow>(&format!("SELECT {COLUMNS} FROM documents WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A document's bytes when they are in Postgres, else the key of its object (the document
/// object store); both `None` once the purge dropped them.
pub async fn content_or_key(
    pool: &PgPool,
    id: Uuid,
) -> StoreResult<(Option<Bytes>, Option<String>)> {
    let row: Option<(Option<Vec<u8>>, Option<String>)> =
        sqlx::query_as("SELECT content, object_key FROM documents WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    let (content, key) = row.unwrap_or_default();
    Ok((content.map(Bytes::from), key))
}

pub async fn content(pool: &PgPool, id: Uuid) -> StoreResult<Option<Bytes>> {
    let bytes: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT content FROM documents WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(bytes.flatten().map(Bytes::from))
}
