-- Printer pools with failover, and documents converted for the printer (issue 15).

-- A pool: an ordered list of member printers and how a job picks one of them. Members are
-- printer ids, in order (`first_healthy` tries them in this order); a member removed from
-- the printers table is skipped by the router.
CREATE TABLE pools (
    id            text PRIMARY KEY,
    owner_tenant  text        NOT NULL,
    display_name  text        NOT NULL,
    policy        text        NOT NULL CHECK (policy IN ('first_healthy', 'least_loaded')),
    members       text[]      NOT NULL,
    -- advanced at each new job routed: `least_loaded` breaks ties from this member on, so
    -- equally loaded members take turns
    turn          bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The pool a job was sent to (its printer_id is the member chosen, which may change while
-- the job is pending and never after its submit started).
ALTER TABLE jobs ADD COLUMN pool_id text;
-- What the document was converted from before it was sent ('pdf'), and how many pages were
-- sent (after page_ranges).
ALTER TABLE jobs ADD COLUMN converted_from text;
ALTER TABLE jobs ADD COLUMN page_count integer;

CREATE INDEX jobs_pool_live ON jobs (pool_id) WHERE pool_id IS NOT NULL AND state IN ('pending', 'processing', 'unconfirmed');
