-- Billing: durable holds, money in (top-ups, redemption codes), and the
-- detail each log row keeps of what it charged.
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    token_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    price TEXT NOT NULL,
    request_id TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    channel_id BIGINT NOT NULL DEFAULT 0,
    is_stream BIGINT NOT NULL DEFAULT 0,
    instance TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
CREATE INDEX holds_lease ON holds(lease_until);
CREATE INDEX holds_instance ON holds(instance);

CREATE TABLE topups (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    quota BIGINT NOT NULL,
    amount TEXT NOT NULL,
    remark TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX topups_user ON topups(user_id);

CREATE TABLE redemptions (
    id BIGSERIAL PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    quota BIGINT NOT NULL,
    status BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    redeemed_by BIGINT NOT NULL DEFAULT 0,
    redeemed_at BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE logs ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN price TEXT;
