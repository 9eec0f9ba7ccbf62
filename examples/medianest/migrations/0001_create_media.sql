-- backward-compatible: new table only
CREATE TABLE IF NOT EXISTS media (
    id BIGSERIAL PRIMARY KEY,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    kind TEXT NOT NULL CHECK (kind IN ('movie', 'series', 'music', 'photo')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
