-- A job's history rows and its recorded callback no longer carry a foreign key to `jobs`.
-- Each such key made every insert look the job up again and lock its row (`FOR KEY SHARE`:
-- one more WAL record, and the job's heap page dirtied once more) — twice per applied
-- callback (the inbox row when recorded, the history event when applied) — although every
-- insert already reads or writes the job in the same statement: `job_events` rows are
-- written by the statement that changes the job, `callback_inbox` rows only for a job the
-- recording statement just read. Deletion, which the keys cascaded, is done by the one
-- place that deletes jobs (retention), in the same transaction.
ALTER TABLE job_events DROP CONSTRAINT IF EXISTS job_events_job_id_fkey;
ALTER TABLE callback_inbox DROP CONSTRAINT IF EXISTS callback_inbox_job_id_fkey;
