-- Retention of the webhook outbox (issue 12): the purge deletes events older than
-- RETENTION_WEBHOOKS_DAYS that no delivery still waits on (their deliveries and attempts go
-- with them, ON DELETE CASCADE); this index finds them and counts them for `purge --dry-run`.
CREATE INDEX outbox_events_created ON outbox_events (created_at);
