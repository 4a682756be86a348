-- A device slot row is no longer deleted when its call ends: it is marked free
-- (job_id NULL, lease_until -infinity) and taken again by an update of the same row. One
-- row per device and slot number, for good. Taking and freeing touch no indexed column, so
-- both are heap-only updates that page pruning cleans up by itself; inserting and deleting
-- a row per vendor call left a dead row and a dead index entry per call for vacuum, and
-- every claim counts the table's rows (a seq scan over them all). Room on each page for
-- the next versions of its rows:
ALTER TABLE device_slots SET (fillfactor = 50);
-- Rows freed the old way are gone; rows still held keep their lease.
