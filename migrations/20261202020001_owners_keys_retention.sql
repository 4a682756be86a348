-- Printers belong to a tenant and may be shared with named tenants; API keys get a name,
-- an optional expiry and a last-used time.

ALTER TABLE printers ADD COLUMN owner_tenant text;
ALTER TABLE printers ADD COLUMN shared_with text[] NOT NULL DEFAULT '{}';

-- Printers registered before owners existed: the tenant with the most jobs on a printer
-- owns it and it is shared with every other tenant that printed on it, so nothing that
-- worked stops working; a printer without jobs goes to the tenant of the oldest live key
-- that could manage printers, else to `default`.
UPDATE printers p SET owner_tenant = COALESCE(
    (SELECT j.tenant FROM jobs j WHERE j.printer_id = p.id
      GROUP BY j.tenant ORDER BY count(*) DESC, j.tenant LIMIT 1),
    (SELECT k.tenant FROM api_keys k
      WHERE k.revoked_at IS NULL AND 'printers:admin' = ANY (k.scopes)
      ORDER BY k.created_at LIMIT 1),
    'default');
UPDATE printers p SET shared_with = ARRAY(
    SELECT DISTINCT j.tenant FROM jobs j
     WHERE j.printer_id = p.id AND j.tenant <> p.owner_tenant ORDER BY 1);
ALTER TABLE printers ALTER COLUMN owner_tenant SET NOT NULL;
CREATE INDEX printers_owner ON printers (owner_tenant);
CREATE INDEX printers_shared_with ON printers USING gin (shared_with);

ALTER TABLE api_keys ADD COLUMN name text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- Retention: the purge finds finished jobs by when they finished, and old idempotency keys.
CREATE INDEX jobs_finished ON jobs (completed_at) WHERE state IN ('completed','failed','canceled');
CREATE INDEX jobs_idempotency_created ON jobs (created_at) WHERE idempotency_key IS NOT NULL;
