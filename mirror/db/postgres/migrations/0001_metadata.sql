-- The metadata roles of mirror.db.roles: tags, manifests, the catalog, links, tag history,
-- passed-through responses and last pulls. Every write that depends on what is stored is one
-- statement or one server-side function, so replicas sharing the database never race a
-- read-modify-write.

CREATE TABLE tags (
    upstream text NOT NULL,
    repo text NOT NULL,
    tag text NOT NULL,
    digest text NOT NULL,
    media_type text NOT NULL,
    size bigint NOT NULL,
    fetched_at double precision NOT NULL,
    PRIMARY KEY (upstream, repo, tag)
);
CREATE INDEX tags_by_digest ON tags (upstream, repo, digest);

CREATE TABLE manifests (
    digest text PRIMARY KEY,
    media_type text NOT NULL,
    size bigint NOT NULL,
    refs text[] NOT NULL,
    cached_at double precision NOT NULL
);

CREATE TABLE repositories (
    upstream text NOT NULL,
    repo text NOT NULL,
    PRIMARY KEY (upstream, repo)
);

-- Content a repository is proven to reference (the authorisation-aware cache).
CREATE TABLE links (
    upstream text NOT NULL,
    repo text NOT NULL,
    digest text NOT NULL,
    PRIMARY KEY (upstream, repo, digest)
);

-- Tag moves, oldest first by id; to_digest NULL: the tag was removed.
CREATE TABLE tag_moves (
    id bigserial PRIMARY KEY,
    upstream text NOT NULL,
    repo text NOT NULL,
    tag text NOT NULL,
    from_digest text,
    to_digest text,
    at double precision NOT NULL
);
CREATE INDEX tag_moves_by_repo ON tag_moves (upstream, repo, id);

CREATE TABLE responses (
    kind text NOT NULL,
    upstream text NOT NULL,
    repo text NOT NULL,
    key text NOT NULL,
    body bytea NOT NULL,
    content_type text NOT NULL,
    headers text[] NOT NULL,
    fetched_at double precision NOT NULL,
    PRIMARY KEY (kind, upstream, repo, key)
);
CREATE INDEX responses_by_repo ON responses (upstream, repo);

CREATE TABLE pulls (
    upstream text NOT NULL,
    repo text NOT NULL,
    digest text NOT NULL,
    at double precision NOT NULL,
    PRIMARY KEY (upstream, repo, digest)
);

-- Record a tag move of (u, r) and keep the newest history_limit moves of the repository.
CREATE FUNCTION mirror_record_move(
    u text, r text, t text, old text, new text, at_ double precision, history_limit integer
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cut bigint;
BEGIN
    INSERT INTO tag_moves (upstream, repo, tag, from_digest, to_digest, at)
        VALUES (u, r, t, old, new, at_);
    SELECT id INTO cut FROM tag_moves WHERE upstream = u AND repo = r
        ORDER BY id DESC OFFSET history_limit LIMIT 1;
    IF cut IS NOT NULL THEN
        DELETE FROM tag_moves WHERE upstream = u AND repo = r AND id <= cut;
    END IF;
END $$;

-- Point tag (u, r, t) at d: the row is locked (or inserted) first, so of two replicas setting
-- one tag at once each sees the other's digest as the old one and the history stays a chain.
CREATE FUNCTION mirror_set_tag(
    u text, r text, t text, d text, mt text, sz bigint, f double precision,
    history_limit integer
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old text;
BEGIN
    LOOP
        SELECT digest INTO old FROM tags WHERE upstream = u AND repo = r AND tag = t FOR UPDATE;
        IF FOUND THEN
            UPDATE tags SET digest = d, media_type = mt, size = sz, fetched_at = f
                WHERE upstream = u AND repo = r AND tag = t;
            EXIT;
        END IF;
        INSERT INTO tags VALUES (u, r, t, d, mt, sz, f) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            old := NULL;
            EXIT;
        END IF;
    END LOOP;
    IF old IS DISTINCT FROM d THEN
        PERFORM mirror_record_move(u, r, t, old, d, f, history_limit);
    END IF;
    INSERT INTO repositories VALUES (u, r) ON CONFLICT DO NOTHING;
END $$;
