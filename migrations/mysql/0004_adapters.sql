-- Adapters uploaded through the admin API, so every instance serves them.
CREATE TABLE adapters (
    name VARCHAR(191) PRIMARY KEY,
    hash VARCHAR(64) NOT NULL,
    wasm LONGBLOB NOT NULL,
    uploaded_at BIGINT NOT NULL
) DEFAULT CHARSET = utf8mb4;
