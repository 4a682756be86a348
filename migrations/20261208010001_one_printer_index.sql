-- Every job row sat in two indexes that lead with its printer or its tenant and printer:
-- `jobs_printer (printer_id)`, for the look-ups by printer alone (the check behind
-- DELETE /v1/printers), and `jobs_tenant_printer_created`, for a tenant's job list
-- filtered by printer. One index led by the printer serves both: the list filters on
-- tenant and printer with equality, so the rows still come in (created_at, id) order.
-- Each insert and each state change (never a HOT update: the state is indexed) wrote an
-- entry into both; now into one.
CREATE INDEX jobs_printer_tenant_created ON jobs (printer_id, tenant, created_at DESC, id DESC);
DROP INDEX IF EXISTS jobs_printer;
DROP INDEX IF EXISTS jobs_tenant_printer_created;
