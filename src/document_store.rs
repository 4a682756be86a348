//! Where document bytes live: in Postgres (`documents.content`, the default) or, with
//! `DOCUMENT_STORE_URL`, in an object store (the `object_store` crate: a local directory
//! `file:///var/lib/print-gateway/documents`, or S3 and S3-compatible servers
//! `s3://bucket/prefix` with the usual `AWS_*` variables, `AWS_ENDPOINT` for MinIO).
//!
//! With an object store, the API writes the bytes to `documents/<uuid>` before the job's
//! row (which records the key in `documents.object_key`), the engine reads them back at
//! dispatch, and the purge deletes the object after the row that named it.

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::store::StoreError;

/// The document bytes' home.
#[derive(Clone, Default)]
pub struct DocumentStore {
    objects: Option<(Arc<dyn ObjectStore>, String)>,
}

impl std::fmt::Debug for DocumentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.objects {
            None => f.write_str("DocumentStore(postgres)"),
            Some((_, kind)) => write!(f, "DocumentStore({kind})"),
        }
    }
}

fn objects_error(what: &str, err: object_store::Error) -> StoreError {
    StoreError::Objects(format!("{what}: {err}"))
}

/// A `DOCUMENT_STORE_URL` that cannot be used; the text names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDocumentStore(String);

impl From<String> for InvalidDocumentStore {
    fn from(message: String) -> Self {
        InvalidDocumentStore(message)
    }
}

impl DocumentStore {
    /// Bytes in Postgres.
    pub fn postgres() -> DocumentStore {
        DocumentStore::default()
    }

    /// From `DOCUMENT_STORE_URL` (`None`: Postgres). Errors name the variable.
    pub fn from_url(url: Option<&str>) -> Result<DocumentStore, InvalidDocumentStore> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(DocumentStore::postgres());
        };
        let parsed = reqwest::Url::parse(url).map_err(|err| {
            format!(
                "DOCUMENT_STORE_URL is not a URL ({err}); use file:///DIR or s3://BUCKET/PREFIX"
            )
        })?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| {
                    "DOCUMENT_STORE_URL: a file:// URL needs an absolute path".to_owned()
                })?;
                std::fs::create_dir_all(&dir).map_err(|err| {
                    format!("DOCUMENT_STORE_URL: cannot create {}: {err}", dir.display())
                })?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|err| format!("DOCUMENT_STORE_URL: {err}"))?,
                )
            }
            "s3" => {
                let bucket = parsed.host_str().unwrap_or_default().to_owned();
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|err| format!("DOCUMENT_STORE_URL (S3, AWS_* variables): {err}"))?;
                let prefix = parsed.path().trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
                }
            }
            other => {
                return Err(format!(
                    "DOCUMENT_STORE_URL: `{other}://` is not supported; use file:///DIR or s3://BUCKET/PREFIX"
                ).into());
            }
        };
        Ok(DocumentStore {
            objects: Some((store, parsed.scheme().to_owned())),
        })
    }

    /// Whether bytes go to an object store.
    pub fn is_external(&self) -> bool {
        self.objects.is_some()
    }

    /// Writes the bytes of a new document; returns its key.
    pub async fn put(&self, bytes: Bytes) -> Result<Option<String>, StoreError> {
        let Some((store, _)) = &self.objects else {
            return Ok(None);
        };
        let key = format!("documents/{}", uuid::Uuid::now_v7());
        store
            .put(&Path::from(key.as_str()), bytes.into())
            .await
            .map_err(|err| objects_error("storing a document", err))?;
        Ok(Some(key))
    }

    /// Reads a document's bytes; `None` when the object is gone (purged).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let Some((store, _)) = &self.objects else {
            return Err(StoreError::Objects(
                "a document is in an object store, but DOCUMENT_STORE_URL is not set".into(),
            ));
        };
        match store.get(&Path::from(key)).await {
            Ok(found) => Ok(Some(
                found
                    .bytes()
                    .await
                    .map_err(|err| objects_error("reading a document", err))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(objects_error("reading a document", err)),
        }
    }

    /// Deletes objects whose rows are gone; a missing one is fine. Failures are logged (the
    /// object is then an orphan, never read again).
    pub async fn delete(&self, keys: &[String]) {
        let Some((store, _)) = &self.objects else {
            return;
        };
        for key in keys {
            match store.delete(&Path::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => {
                    tracing::warn!(object = %key, error = %err, "could not delete a purged document's object")
                }
            }
        }
    }
}
