-- The callback inbox (issue 17): a vendor's result callback is answered once it is recorded
-- here, and the engine confirms it with the vendor and applies it afterwards, in batches.
-- One row per job: a later callback of the same job replaces a recorded one only when it
-- ends the task and the recorded one does not. A row lives until the engine applied it or
-- found the job ended; it goes with its job (retention deletes only finished jobs).
CREATE TABLE callback_inbox (
    job_id        uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    backend       text NOT NULL,
    task_id       text NOT NULL,
    -- What the body says, in the neutral model (`TaskProgress`) and the vendor's word.
    progress      jsonb NOT NULL,
    vendor_status text NOT NULL,
    body          jsonb NOT NULL,
    -- The body claims the task ended.
    ends_task     boolean NOT NULL,
    -- Ask the vendor before applying (LIANKE_CONFIRM_CALLBACKS, terminal bodies).
    confirm       boolean NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    due_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    lease_owner   uuid,
    lease_until   timestamptz
);

CREATE INDEX callback_inbox_due ON callback_inbox (due_at);
