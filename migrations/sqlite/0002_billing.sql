-- Billing: durable holds, money in (top-ups, redemption codes), and the
-- detail each log row keeps of what it charged.
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    token_id INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    price TEXT NOT NULL,
    request_id TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    channel_id INTEGER NOT NULL DEFAULT 0,
    is_stream INTEGER NOT NULL DEFAULT 0,
    instance TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
);
CREATE INDEX holds_lease ON holds(lease_until);
CREATE INDEX holds_instance ON holds(instance);

CREATE TABLE topups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    quota INTEGER NOT NULL,
    amount TEXT NOT NULL,
    remark TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX topups_user ON topups(user_id);

CREATE TABLE redemptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    quota INTEGER NOT NULL,
    status INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    redeemed_by INTEGER NOT NULL DEFAULT 0,
    redeemed_at INTEGER NOT NULL DEFAULT 0
);

ALTER TABLE logs ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN price TEXT;
