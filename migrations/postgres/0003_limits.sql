-- Per-key and per-user limits: concurrent calls, requests and tokens per
-- minute. 0 means no limit.
ALTER TABLE tokens ADD COLUMN max_concurrency BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN rpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN tpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN max_concurrency BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN tpm BIGINT NOT NULL DEFAULT 0;
