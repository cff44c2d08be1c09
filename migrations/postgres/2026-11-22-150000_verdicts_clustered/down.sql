-- The SQLite store makes verdicts a WITHOUT ROWID table in this version (and back in its down migration).
-- PostgreSQL has no such table kind (a heap plus its primary key index is
-- what it has, and COPY fills both fast), so nothing changes here; the
-- version exists so both backends have the same migrations.
SELECT 1;
