-- The neutral job store. Every vendor backend plugs into these tables.

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant      text        NOT NULL,
    -- the first characters of the key, shown by `api-keys list` to tell keys apart
    prefix      text        NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored
    key_hash    bytea       NOT NULL UNIQUE,
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE printers (
    id                  text PRIMARY KEY,
    display_name        text        NOT NULL,
    backend             text        NOT NULL,
    -- backend-specific, non-secret locator (device id, port, share sn, …)
    locator             jsonb       NOT NULL DEFAULT '{}',
    -- backend-specific secrets (deviceKey, …): write-only, never returned by the API
    secrets             jsonb       NOT NULL DEFAULT '{}',
    default_options     jsonb       NOT NULL DEFAULT '{}',
    enabled             boolean     NOT NULL DEFAULT true,
    -- the vendor device several printers may share; in-flight limits are per device
    device              text        NOT NULL,
    max_in_flight       integer     NOT NULL CHECK (max_in_flight > 0),
    capabilities        jsonb,
    capabilities_raw    jsonb,
    capabilities_at     timestamptz,
    online              boolean,
    last_error          text,
    last_error_at       timestamptz,
    breaker_failures    integer     NOT NULL DEFAULT 0,
    breaker_open_until  timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id            uuid PRIMARY KEY,
    kind          text        NOT NULL,
    doc_type      text,
    content_type  text,
    filename      text,
    url           text,
    size_bytes    bigint      NOT NULL DEFAULT 0,
    sha256        bytea,
    content       bytea,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id                 uuid PRIMARY KEY,
    tenant             text        NOT NULL,
    printer_id         text        NOT NULL REFERENCES printers (id),
    document_id        uuid        NOT NULL REFERENCES documents (id),
    -- what the API shows of the document (kind, type, name, size, url), kept with the job
    document_info      jsonb       NOT NULL DEFAULT '{}',
    source             text        NOT NULL DEFAULT 'api',
    options            jsonb       NOT NULL DEFAULT '{}',
    options_mode       text        NOT NULL DEFAULT 'strict',
    dropped_options    text[]      NOT NULL DEFAULT '{}',
    metadata           jsonb,
    state              text        NOT NULL DEFAULT 'pending',
    state_reason       text,
    vendor_status      text,
    error              jsonb,
    vendor_task_id     text,
    vendor_ids         jsonb,
    attempts           integer     NOT NULL DEFAULT 0,
    idempotency_key    text,
    request_hash       bytea,
    -- when the engine next has something to do with the job (dispatch, poll, reconcile)
    due_at             timestamptz,
    lease_owner        uuid,
    lease_until        timestamptz,
    -- set, committed, right before a submit leaves; a reclaimed job with it set goes to
    -- `unconfirmed` instead of being submitted again
    submit_started_at  timestamptz,
    cancel_requested   boolean     NOT NULL DEFAULT false,
    callback_seen_at   timestamptz,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    dispatched_at      timestamptz,
    completed_at       timestamptz,
    expires_at         timestamptz,
    CONSTRAINT jobs_state_known CHECK (state IN ('pending','processing','unconfirmed','completed','failed','canceled'))
);

-- keyset pagination on (created_at, id), newest first, per tenant and per filter
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_tenant_state_created ON jobs (tenant, state, created_at DESC, id DESC);
CREATE INDEX jobs_tenant_printer_created ON jobs (tenant, printer_id, created_at DESC, id DESC);
-- the engine's claim: only live jobs are indexed
CREATE INDEX jobs_due ON jobs (due_at) WHERE state IN ('pending','processing','unconfirmed');
-- per-device in-flight counting and printer lookups of live jobs
CREATE INDEX jobs_live_printer ON jobs (printer_id) WHERE state IN ('pending','processing','unconfirmed');
-- idempotency keys are scoped per tenant
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_vendor_task ON jobs (printer_id, vendor_task_id) WHERE vendor_task_id IS NOT NULL;

CREATE TABLE job_events (
    id              bigserial PRIMARY KEY,
    job_id          uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    source          text        NOT NULL,
    kind            text        NOT NULL,
    from_state      text,
    to_state        text        NOT NULL,
    reason          text,
    message         text,
    vendor_payload  jsonb
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Vendor-call slots per device: a worker holds one while its call is in flight.
-- Rows expire with their lease, so a crashed worker's slot frees itself.
CREATE TABLE device_slots (
    device       text        NOT NULL,
    slot         integer     NOT NULL,
    job_id       uuid,
    lease_until  timestamptz NOT NULL,
    PRIMARY KEY (device, slot)
);

-- Wake dispatchers as soon as a job becomes due now.
CREATE FUNCTION notify_job_due() RETURNS trigger AS $$
BEGIN
    IF NEW.due_at IS NOT NULL AND NEW.due_at <= clock_timestamp() AND NEW.lease_owner IS NULL THEN
        PERFORM pg_notify('print_gateway_jobs_due', '');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_due_notify
    AFTER INSERT OR UPDATE OF due_at, lease_owner ON jobs
    FOR EACH ROW EXECUTE FUNCTION notify_job_due();
