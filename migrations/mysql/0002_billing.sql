-- Billing: durable holds, money in (top-ups, redemption codes), and the
-- detail each log row keeps of what it charged.
CREATE TABLE holds (
    id VARCHAR(64) PRIMARY KEY,
    user_id BIGINT NOT NULL,
    token_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    model VARCHAR(191) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    price TEXT NOT NULL,
    request_id VARCHAR(64) NOT NULL,
    client_ip VARCHAR(64) NOT NULL,
    channel_id BIGINT NOT NULL DEFAULT 0,
    is_stream BIGINT NOT NULL DEFAULT 0,
    instance VARCHAR(64) NOT NULL,
    created_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    INDEX holds_lease (lease_until),
    INDEX holds_instance (instance)
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE topups (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    user_id BIGINT NOT NULL,
    quota BIGINT NOT NULL,
    amount VARCHAR(64) NOT NULL,
    remark VARCHAR(1024) NOT NULL,
    created_at BIGINT NOT NULL,
    INDEX topups_user (user_id)
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE redemptions (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    code VARCHAR(64) NOT NULL UNIQUE,
    name VARCHAR(191) NOT NULL,
    quota BIGINT NOT NULL,
    status BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    redeemed_by BIGINT NOT NULL DEFAULT 0,
    redeemed_at BIGINT NOT NULL DEFAULT 0
) DEFAULT CHARSET = utf8mb4;

ALTER TABLE logs ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN price TEXT;
