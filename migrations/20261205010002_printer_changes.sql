-- The accept path remembers printer settings for a few seconds per replica (issue 17); a
-- change to what accepting a job checks (owner, sharing, enabled, backend, where it is,
-- defaults, capabilities) or a delete tells every replica to forget that printer at once.
CREATE FUNCTION notify_printer_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('print_gateway_printers', OLD.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER printers_changed
    AFTER UPDATE OF display_name, backend, locator, default_options, enabled, device, max_in_flight,
        capabilities, owner_tenant, shared_with OR DELETE ON printers
    FOR EACH ROW EXECUTE FUNCTION notify_printer_changed();
