-- WeCom printers (issue 6): the gateway acts as the cloud of WeCom devices. It pulls the
-- jobs WeCom users submit, prints them on a bound printer and reports the outcome back.

-- One row per imported WeCom job, written in the same transaction as the gateway job: its
-- primary key makes every WeCom `jobid` import exactly once across replicas.
-- The row is also the report outbox: when the gateway job finishes, the trigger below marks
-- it due in the same statement, so a crash can delay a report but never lose it.
CREATE TABLE wecom_jobs (
    jobid               text PRIMARY KEY,
    -- the WeCom printer (source) the job came through
    printer_id          text        NOT NULL REFERENCES printers (id),
    job_id              uuid        NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
    device_sn           text        NOT NULL,
    open_userid         text        NOT NULL,
    wecom_created_at    timestamptz,
    imported_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- the list `status` last seen (0 unprinted, 1 printed, 2 failed)
    wecom_status        smallint,
    checked_at          timestamptz,
    -- the WeCom user deleted the job (push `printer_job_del`, or gone from the batch look-up)
    deleted_at          timestamptz,
    -- report outbox
    report_due_at       timestamptz,
    report_lease_until  timestamptz,
    report_attempts     integer     NOT NULL DEFAULT 0,
    report_done_at      timestamptz,
    -- reported | skipped | abandoned
    report_outcome      text,
    report_last_error   text
);
CREATE INDEX wecom_jobs_report_due ON wecom_jobs (report_due_at)
    WHERE report_done_at IS NULL AND report_due_at IS NOT NULL;
CREATE INDEX wecom_jobs_live ON wecom_jobs (printer_id) WHERE report_due_at IS NULL;
CREATE INDEX wecom_jobs_users ON wecom_jobs (printer_id, open_userid);

CREATE FUNCTION wecom_job_finished() RETURNS trigger AS $$
BEGIN
    UPDATE wecom_jobs SET report_due_at = clock_timestamp()
     WHERE job_id = NEW.id AND report_due_at IS NULL;
    IF FOUND THEN
        PERFORM pg_notify('print_gateway_wecom', 'report');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_wecom_finished
    AFTER UPDATE OF state ON jobs
    FOR EACH ROW
    WHEN (NEW.source = 'wecom'
          AND NEW.state IN ('completed', 'failed', 'canceled')
          AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION wecom_job_finished();

-- One sync at a time per WeCom printer across replicas: a lease row.
CREATE TABLE wecom_sync (
    printer_id      text PRIMARY KEY REFERENCES printers (id) ON DELETE CASCADE,
    lease_owner     uuid,
    lease_until     timestamptz,
    last_synced_at  timestamptz,
    last_imported   integer     NOT NULL DEFAULT 0,
    last_error      text,
    last_error_at   timestamptz
);

-- Push messages, de-duplicated on WeCom's `base_info.req_id` (shared by every replica) and
-- handled in the background so the push is answered at once.
CREATE TABLE wecom_inbox (
    req_id       text PRIMARY KEY,
    event        text        NOT NULL,
    device_sn    text,
    jobid        text,
    open_userid  text,
    -- the decrypted message; it may carry an auth_code or a model_ticket, so it is
    -- cleared once handled
    payload      jsonb,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- NULL once handled
    due_at       timestamptz DEFAULT clock_timestamp(),
    lease_until  timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    handled_at   timestamptz,
    outcome      text,
    last_error   text
);
CREATE INDEX wecom_inbox_due ON wecom_inbox (due_at) WHERE due_at IS NOT NULL;

CREATE FUNCTION wecom_inbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('print_gateway_wecom', 'inbox');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER wecom_inbox_notify
    AFTER INSERT ON wecom_inbox
    FOR EACH ROW EXECUTE FUNCTION wecom_inbox_notify();

-- The newest model_ticket pushed by WeCom (valid 30 min), shared by every replica.
CREATE TABLE wecom_model_tickets (
    model_id     text PRIMARY KEY,
    ticket       text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
