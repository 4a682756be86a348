-- Every submit reads the printers sharing its device (the device hold in begin_submit);
-- so do the reconciler's lookups by time. Without an index that is a scan of all printers.
CREATE INDEX IF NOT EXISTS printers_device ON printers (device);
