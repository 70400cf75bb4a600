-- Transit schema, PostgreSQL flavour. Money is an integer number of quota units;
-- timestamps are Unix seconds; flags are 0/1 integers.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    role TEXT NOT NULL DEFAULT 'user',
    status BIGINT NOT NULL DEFAULT 1,
    group_name TEXT NOT NULL DEFAULT 'default',
    quota BIGINT NOT NULL DEFAULT 0,
    used_quota BIGINT NOT NULL DEFAULT 0,
    request_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL DEFAULT '',
    key_digest TEXT NOT NULL UNIQUE,
    key_hint TEXT NOT NULL,
    status BIGINT NOT NULL DEFAULT 1,
    remain_quota BIGINT NOT NULL DEFAULT 0,
    unlimited_quota BIGINT NOT NULL DEFAULT 1,
    used_quota BIGINT NOT NULL DEFAULT 0,
    models TEXT NOT NULL DEFAULT '',
    allowed_ips TEXT NOT NULL DEFAULT '',
    group_name TEXT NOT NULL DEFAULT '',
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    accessed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tokens_user ON tokens(user_id);

CREATE TABLE channels (
    id BIGSERIAL PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT NOT NULL DEFAULT '',
    secret_enc TEXT NOT NULL,
    models TEXT NOT NULL DEFAULT '',
    model_mapping TEXT NOT NULL DEFAULT '{}',
    group_names TEXT NOT NULL DEFAULT 'default',
    priority BIGINT NOT NULL DEFAULT 0,
    weight BIGINT NOT NULL DEFAULT 1,
    max_concurrency BIGINT NOT NULL DEFAULT 200,
    status BIGINT NOT NULL DEFAULT 1,
    options TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE abilities (
    group_name TEXT NOT NULL,
    model TEXT NOT NULL,
    channel_id BIGINT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    priority BIGINT NOT NULL DEFAULT 0,
    weight BIGINT NOT NULL DEFAULT 1,
    enabled BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (group_name, model, channel_id)
);

CREATE TABLE logs (
    id BIGSERIAL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id BIGINT NOT NULL DEFAULT 0,
    token_id BIGINT NOT NULL DEFAULT 0,
    channel_id BIGINT NOT NULL DEFAULT 0,
    model TEXT NOT NULL DEFAULT '',
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    quota BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    first_token_ms BIGINT NOT NULL DEFAULT 0,
    is_stream BIGINT NOT NULL DEFAULT 0,
    status_code BIGINT NOT NULL DEFAULT 0,
    request_id TEXT NOT NULL DEFAULT '',
    client_ip TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL DEFAULT ''
);
CREATE INDEX logs_user_time ON logs(user_id, created_at);
CREATE INDEX logs_token_time ON logs(token_id, created_at);

CREATE TABLE options (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Bumped on every channel change so every instance can notice it cheaply.
INSERT INTO options (name, value) VALUES ('channels_version', '0');
