-- Transit schema, MySQL and MariaDB flavour. Money is an integer number of
-- quota units; timestamps are Unix seconds; flags are 0/1 integers. Long
-- text columns have no default (MySQL before 8.0.13 forbids one); Transit
-- always writes them.
CREATE TABLE users (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    username VARCHAR(191) NOT NULL UNIQUE,
    display_name VARCHAR(191) NOT NULL DEFAULT '',
    password_hash VARCHAR(255),
    role VARCHAR(32) NOT NULL DEFAULT 'user',
    status BIGINT NOT NULL DEFAULT 1,
    group_name VARCHAR(64) NOT NULL DEFAULT 'default',
    quota BIGINT NOT NULL DEFAULT 0,
    used_quota BIGINT NOT NULL DEFAULT 0,
    request_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE tokens (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    user_id BIGINT NOT NULL,
    name VARCHAR(191) NOT NULL DEFAULT '',
    key_digest VARCHAR(64) NOT NULL UNIQUE,
    key_hint VARCHAR(32) NOT NULL,
    status BIGINT NOT NULL DEFAULT 1,
    remain_quota BIGINT NOT NULL DEFAULT 0,
    unlimited_quota BIGINT NOT NULL DEFAULT 1,
    used_quota BIGINT NOT NULL DEFAULT 0,
    models TEXT NOT NULL,
    allowed_ips TEXT NOT NULL,
    group_name VARCHAR(64) NOT NULL DEFAULT '',
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    accessed_at BIGINT NOT NULL DEFAULT 0,
    INDEX tokens_user (user_id),
    FOREIGN KEY (user_id) REFERENCES users(id)
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE channels (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    type VARCHAR(64) NOT NULL,
    name VARCHAR(191) NOT NULL,
    base_url VARCHAR(1024) NOT NULL DEFAULT '',
    secret_enc TEXT NOT NULL,
    models TEXT NOT NULL,
    model_mapping TEXT NOT NULL,
    group_names VARCHAR(1024) NOT NULL DEFAULT 'default',
    priority BIGINT NOT NULL DEFAULT 0,
    weight BIGINT NOT NULL DEFAULT 1,
    max_concurrency BIGINT NOT NULL DEFAULT 200,
    status BIGINT NOT NULL DEFAULT 1,
    options TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE abilities (
    group_name VARCHAR(64) NOT NULL,
    model VARCHAR(191) NOT NULL,
    channel_id BIGINT NOT NULL,
    priority BIGINT NOT NULL DEFAULT 0,
    weight BIGINT NOT NULL DEFAULT 1,
    enabled BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (group_name, model, channel_id),
    FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE CASCADE
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE logs (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    created_at BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    user_id BIGINT NOT NULL DEFAULT 0,
    token_id BIGINT NOT NULL DEFAULT 0,
    channel_id BIGINT NOT NULL DEFAULT 0,
    model VARCHAR(191) NOT NULL DEFAULT '',
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    quota BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    first_token_ms BIGINT NOT NULL DEFAULT 0,
    is_stream BIGINT NOT NULL DEFAULT 0,
    status_code BIGINT NOT NULL DEFAULT 0,
    request_id VARCHAR(64) NOT NULL DEFAULT '',
    client_ip VARCHAR(64) NOT NULL DEFAULT '',
    content TEXT NOT NULL,
    INDEX logs_user_time (user_id, created_at),
    INDEX logs_token_time (token_id, created_at)
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE options (
    name VARCHAR(191) PRIMARY KEY,
    value TEXT NOT NULL
) DEFAULT CHARSET = utf8mb4;

-- Bumped on every channel change so every instance can notice it cheaply.
INSERT INTO options (name, value) VALUES ('channels_version', '0');
