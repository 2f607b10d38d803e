-- Search over 100,000+ devices (`q`: text in the name or a tag; filters on status and kind).
-- `q` is a substring match, which a B-tree cannot serve: a trigram GIN index over the name and
-- the tags (one text, lower-cased, newline-separated; neither may contain a control character)
-- finds the candidates, and the query rechecks each one against the name and every tag.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE FUNCTION devices_search_text(name TEXT, tags JSONB) RETURNS TEXT
    LANGUAGE SQL IMMUTABLE PARALLEL SAFE
    AS $$ SELECT lower(name) || E'\n' ||
        lower(COALESCE((SELECT string_agg(t, E'\n') FROM jsonb_array_elements_text(tags) AS t), '')) $$;

CREATE INDEX devices_search ON devices USING GIN (devices_search_text(name, tags) gin_trgm_ops);
CREATE INDEX devices_status ON devices (status, id);
CREATE INDEX devices_kind ON devices (kind, id);
