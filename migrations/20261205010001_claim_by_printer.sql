-- The claim walks live jobs printer by printer (the earliest due first, as many as the
-- printer's device has free slots), so it needs them ordered by due time per printer.
CREATE INDEX jobs_printer_due ON jobs (printer_id, due_at) WHERE state IN ('pending', 'processing', 'unconfirmed');
