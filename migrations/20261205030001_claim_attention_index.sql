-- A printer that takes no new submits (disabled, or its breaker open) still has jobs that
-- need the engine: processing and unconfirmed ones, and pending ones to cancel, expire,
-- settle after a crashed submit or route to another pool member. The claim finds those
-- here without walking the printer's whole backlog of pending jobs.
CREATE INDEX jobs_printer_due_attention ON jobs (printer_id, due_at)
    WHERE state IN ('processing', 'unconfirmed')
       OR (state = 'pending' AND (cancel_requested OR submit_started_at IS NOT NULL
                                  OR expires_at IS NOT NULL OR pool_id IS NOT NULL));
