-- Printer health that tells the truth: every printer-level failure (authentication
-- included, which never counts toward the breaker) with its neutral and vendor codes,
-- when the printer was last seen working, and when its status was last asked.
ALTER TABLE printers
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error_code      text,
    ADD COLUMN last_error_vendor_code text,
    ADD COLUMN last_seen_at         timestamptz,
    ADD COLUMN status_checked_at    timestamptz;

UPDATE printers SET consecutive_failures = breaker_failures;
