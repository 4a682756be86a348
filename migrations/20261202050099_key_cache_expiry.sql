-- Cached API keys carry their expiry: a changed `expires_at` must also make every
-- replica forget the key at once (same trigger as in 20261202050001_accept_path.sql).
DROP TRIGGER api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF revoked_at, scopes, tenant, key_hash, expires_at OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_api_key_changed();
