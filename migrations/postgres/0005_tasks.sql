-- Asynchronous generation tasks (video, images): the local id a client
-- holds, the upstream's id, who pays, what was held, and the poller's
-- schedule and lease.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    token_id BIGINT NOT NULL,
    model TEXT NOT NULL,
    channel_id BIGINT NOT NULL DEFAULT 0,
    key_index BIGINT NOT NULL DEFAULT 0,
    upstream_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    results TEXT NOT NULL DEFAULT '[]',
    error TEXT NOT NULL DEFAULT '',
    hold_id TEXT NOT NULL,
    held BIGINT NOT NULL,
    units TEXT NOT NULL,
    charged BIGINT NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_poll_ms BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    deadline BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tasks_due ON tasks (status, next_poll_ms);
CREATE INDEX tasks_user ON tasks (user_id, created_at);
