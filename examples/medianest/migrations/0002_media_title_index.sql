-- backward-compatible: additive index
CREATE INDEX IF NOT EXISTS media_title_idx ON media (title);
