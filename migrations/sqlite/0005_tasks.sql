-- Asynchronous generation tasks (video, images): the local id a client
-- holds, the upstream's id, who pays, what was held, and the poller's
-- schedule and lease.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    token_id INTEGER NOT NULL,
    model TEXT NOT NULL,
    channel_id INTEGER NOT NULL DEFAULT 0,
    key_index INTEGER NOT NULL DEFAULT 0,
    upstream_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    results TEXT NOT NULL DEFAULT '[]',
    error TEXT NOT NULL DEFAULT '',
    hold_id TEXT NOT NULL,
    held INTEGER NOT NULL,
    units TEXT NOT NULL,
    charged INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_poll_ms INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until_ms INTEGER NOT NULL DEFAULT 0,
    deadline INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_due ON tasks (status, next_poll_ms);
CREATE INDEX tasks_user ON tasks (user_id, created_at);
