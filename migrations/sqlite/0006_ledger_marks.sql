-- Ledger entries that are not idempotent by themselves (a call's charge to
-- a credit line) leave a mark in the transaction that applies them, so a
-- retry after an ambiguous commit applies nothing twice. Old marks are
-- pruned by the maintenance sweep.
CREATE TABLE ledger_marks (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE INDEX ledger_marks_created ON ledger_marks(created_at);
