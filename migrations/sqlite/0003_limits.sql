-- Per-key and per-user limits: concurrent calls, requests and tokens per
-- minute. 0 means no limit.
ALTER TABLE tokens ADD COLUMN max_concurrency INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN rpm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN tpm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN max_concurrency INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rpm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN tpm INTEGER NOT NULL DEFAULT 0;
