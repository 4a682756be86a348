-- Documents outside Postgres (issue 14): with DOCUMENT_STORE_URL the bytes live in an object
-- store under this key and `content` stays NULL.
ALTER TABLE documents ADD COLUMN object_key text;
