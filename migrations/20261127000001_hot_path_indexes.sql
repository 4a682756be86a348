-- Indexes the review found missing on hot or unbounded queries.

-- Every job by printer (not only live ones): the foreign-key check behind DELETE /v1/printers
-- and per-printer look-ups stay index scans as the table grows.
DROP INDEX IF EXISTS jobs_live_printer;
CREATE INDEX jobs_printer ON jobs (printer_id);

-- The WeCom sync's "users seen in the last 7 days" per printer.
CREATE INDEX wecom_jobs_printer_imported ON wecom_jobs (printer_id, imported_at);
