-- Asynchronous generation tasks (video, images): the local id a client
-- holds, the upstream's id, who pays, what was held, and the poller's
-- schedule and lease.
CREATE TABLE tasks (
    id VARCHAR(64) PRIMARY KEY,
    kind VARCHAR(32) NOT NULL,
    endpoint VARCHAR(64) NOT NULL,
    user_id BIGINT NOT NULL,
    token_id BIGINT NOT NULL,
    model VARCHAR(191) NOT NULL,
    channel_id BIGINT NOT NULL DEFAULT 0,
    key_index BIGINT NOT NULL DEFAULT 0,
    upstream_id VARCHAR(512) NOT NULL DEFAULT '',
    status VARCHAR(16) NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    results TEXT NOT NULL,
    error TEXT NOT NULL,
    hold_id VARCHAR(64) NOT NULL,
    held BIGINT NOT NULL,
    units TEXT NOT NULL,
    charged BIGINT NOT NULL DEFAULT 0,
    params TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_poll_ms BIGINT NOT NULL DEFAULT 0,
    lease_owner VARCHAR(64) NOT NULL DEFAULT '',
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    deadline BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT NOT NULL DEFAULT 0,
    INDEX tasks_due (status, next_poll_ms),
    INDEX tasks_user (user_id, created_at)
) DEFAULT CHARSET = utf8mb4;
