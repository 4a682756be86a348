-- notify_job_due() notifies only for a row left due and unleased; every other update of
-- due_at or lease_owner (each claim takes a lease, each terminal state clears due_at) still
-- paid a PL/pgSQL call to find that out. The WHEN clause skips the call for those rows; the
-- function keeps the check against the clock.
DROP TRIGGER IF EXISTS jobs_due_notify ON jobs;
CREATE TRIGGER jobs_due_notify
    AFTER UPDATE OF due_at, lease_owner ON jobs
    FOR EACH ROW
    WHEN (NEW.due_at IS NOT NULL AND NEW.lease_owner IS NULL)
    EXECUTE FUNCTION notify_job_due();
