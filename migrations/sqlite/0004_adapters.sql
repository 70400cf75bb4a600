-- Adapters uploaded through the admin API, so every instance serves them.
CREATE TABLE adapters (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    wasm BLOB NOT NULL,
    uploaded_at INTEGER NOT NULL
);
