-- Truthful outcomes: the reconciler and the device hold ask "which other submits to this
-- device have no known task?" (unconfirmed, cut off by a crash, or settled by an operator
-- without a task). Only such rows are indexed, so the set stays tiny.
CREATE INDEX jobs_unresolved_submit ON jobs (printer_id, submit_started_at)
    WHERE submit_started_at IS NOT NULL AND vendor_task_id IS NULL;
