-- `jobs_due` (due_at over live jobs) has had no reader since the claim walks printer by
-- printer (`jobs_printer_due`, `jobs_printer_due_attention`). Every state change of a job
-- is a non-HOT update (state and due_at are indexed), so each index on `jobs` is one more
-- index entry written per dispatch and per callback: this one bought nothing for its cost.
DROP INDEX IF EXISTS jobs_due;
