-- A deleted account keeps its row, anonymized, so the other party's call history keeps
-- its calls; deleted_at marks it, and every lookup by name skips it.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
