-- Outbound webhooks (issue 12): tenants' endpoints, the event outbox, deliveries and every
-- delivery attempt.

CREATE TABLE webhook_endpoints (
    id                     uuid PRIMARY KEY,
    tenant                 text        NOT NULL,
    url                    text        NOT NULL,
    description            text,
    -- the event types sent to this endpoint; empty = every type
    event_types            text[]      NOT NULL DEFAULT '{}',
    enabled                boolean     NOT NULL DEFAULT true,
    -- `whsec_` + base64 of the key bytes; signs every delivery
    secret                 text        NOT NULL,
    -- after a rotation the old secret also signs until previous_secret_until
    previous_secret        text,
    previous_secret_until  timestamptz,
    -- set when a delivery exhausted its retry schedule; cleared by the next success
    failing_since          timestamptz,
    disabled_reason        text,
    created_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant, created_at, id);

-- The outbox: one row per event, written in the same statement/transaction as the change
-- that causes it. `txid` orders the events feed safely (an event becomes visible there only
-- once every transaction that started before it has finished).
CREATE TABLE outbox_events (
    id           bigserial PRIMARY KEY,
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- NULL: an event of a shared printer, for every tenant
    tenant       text,
    type         text        NOT NULL,
    job_id       uuid,
    printer_id   text,
    -- per job: 1, 2, 3, … so a receiver can drop a stale event; NULL for printer events,
    -- whose sequence is their id (it grows per printer: changes to one printer row are
    -- serialised by its row lock)
    sequence     bigint,
    -- the job or printer row as it was after the change (no secrets)
    snapshot     jsonb       NOT NULL,
    -- a test ping goes to this endpoint only
    endpoint_id  uuid,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_events_job ON outbox_events (job_id, sequence) WHERE job_id IS NOT NULL;
CREATE INDEX outbox_events_printer ON outbox_events (printer_id, sequence) WHERE printer_id IS NOT NULL;
CREATE INDEX outbox_events_feed ON outbox_events (txid, id);
CREATE INDEX outbox_events_tenant_feed ON outbox_events (tenant, txid, id);

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         bigint      NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    -- pending | delivered | failed (retry schedule exhausted)
    state            text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    -- when the next attempt is due; while an attempt is in flight, the end of its lease
    next_attempt_at  timestamptz,
    lease_owner      uuid,
    last_status      integer,
    last_error       text,
    last_latency_ms  integer,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT webhook_deliveries_state_known CHECK (state IN ('pending', 'delivered', 'failed')),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_oldest ON webhook_deliveries (created_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- The delivery log: every attempt with its answer.
CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint      NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- the HTTP status, NULL when no answer came (refused, timeout, …)
    status       integer,
    latency_ms   integer     NOT NULL,
    error        text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- Fan-out in the event's own transaction: one delivery per enabled endpoint of the tenant
-- that wants the type, and a wake-up for the delivery workers.
CREATE FUNCTION outbox_fan_out() RETURNS trigger AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, next_attempt_at)
    SELECT e.id, NEW.id, clock_timestamp() FROM webhook_endpoints e
     WHERE (NEW.tenant IS NULL OR e.tenant = NEW.tenant)
       AND (CASE WHEN NEW.endpoint_id IS NULL
                 THEN e.enabled AND (cardinality(e.event_types) = 0 OR NEW.type = ANY (e.event_types))
                 ELSE e.id = NEW.endpoint_id END);
    IF FOUND THEN
        PERFORM pg_notify('print_gateway_webhooks', '');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER outbox_events_fan_out
    AFTER INSERT ON outbox_events
    FOR EACH ROW EXECUTE FUNCTION outbox_fan_out();
