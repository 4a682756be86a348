-- The accept path without a NOTIFY per job (issue 17).
--
-- A pg_notify in the accepting transaction takes Postgres' global notify lock at commit and
-- serialises every accept. New jobs now wake workers from the application instead: at
-- once in-process, and through one coalesced NOTIFY per short interval for other replicas
-- (the sweep stays the backstop). Updates that make a job due now still notify here: they
-- are rare next to accepts (releases, operator actions, devices coming back).
DROP TRIGGER jobs_due_notify ON jobs;
CREATE TRIGGER jobs_due_notify
    AFTER UPDATE OF due_at, lease_owner ON jobs
    FOR EACH ROW EXECUTE FUNCTION notify_job_due();

-- API keys are cached for a few seconds by every replica; a change to what a key may do
-- (revoked, deleted, other scopes or tenant) tells every replica to forget it at once.
CREATE FUNCTION notify_api_key_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('print_gateway_api_keys', OLD.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF revoked_at, scopes, tenant, key_hash OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_api_key_changed();
