-- Search over 100,000+ devices (`q`: text in the name or a tag; filters on status and kind).
-- `q` is a substring match, which a B-tree cannot serve. `search_text` holds the name and the
-- tags as one lower-cased text, newline-separated; neither may contain a control character, so
-- for a `q` without one, "q is in search_text" is exactly "q is in the name or in a tag". A
-- trigram GIN index serves that match; the column is stored so that checking a row is cheap and
-- the planner has statistics for it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- For a GIN index over status and text together (status = 'online' AND q).
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE FUNCTION devices_search_text(name TEXT, tags JSONB) RETURNS TEXT
    LANGUAGE SQL IMMUTABLE PARALLEL SAFE
    AS $$ SELECT lower(name) || E'\n' ||
        lower(COALESCE((SELECT string_agg(t, E'\n') FROM jsonb_array_elements_text(tags) AS t), '')) $$;

ALTER TABLE devices
    ADD COLUMN search_text TEXT GENERATED ALWAYS AS (devices_search_text(name, tags)) STORED;
-- GIN serves any subset of its columns, so this one index answers `q` alone and `q` with a
-- status; the planner intersects it with the tags index for `q` + `tag` (+ `status`).
CREATE INDEX devices_search ON devices USING GIN (status, search_text gin_trgm_ops);
CREATE INDEX devices_status ON devices (status, id);
CREATE INDEX devices_kind ON devices (kind, id);
