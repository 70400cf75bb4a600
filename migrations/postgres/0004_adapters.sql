-- Adapters uploaded through the admin API, so every instance serves them.
CREATE TABLE adapters (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    wasm BYTEA NOT NULL,
    uploaded_at BIGINT NOT NULL
);
