"""The SQL of the shared metadata store, one statement per call (see migrations/ for the
schema and the server-side functions)."""

from __future__ import annotations


class Q:
    """The statements, by the store method that runs them."""

    tag = (
        "SELECT digest, media_type, size, fetched_at FROM tags"
        " WHERE upstream = $1 AND repo = $2 AND tag = $3"
    )
    set_tag = "SELECT mirror_set_tag($1, $2, $3, $4, $5, $6, $7, $8)"
    delete_tag = (
        "DELETE FROM tags WHERE upstream = $1 AND repo = $2 AND tag = $3"
        " RETURNING digest, media_type, size, fetched_at"
    )
    record_move = "SELECT mirror_record_move($1, $2, $3, $4, $5, $6, $7)"
    touch_tag = (
        "UPDATE tags SET fetched_at = $4 WHERE upstream = $1 AND repo = $2 AND tag = $3"
        " RETURNING digest, media_type, size, fetched_at"
    )
    tags = (
        "SELECT upstream, repo, tag, digest, media_type, size, fetched_at FROM tags"
        " ORDER BY upstream, repo, tag"
    )

    manifest = "SELECT media_type, size, refs, cached_at FROM manifests WHERE digest = $1"
    set_manifest = (
        "INSERT INTO manifests VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO UPDATE"
        " SET media_type = EXCLUDED.media_type, size = EXCLUDED.size, refs = EXCLUDED.refs,"
        " cached_at = EXCLUDED.cached_at"
    )
    delete_manifest = "DELETE FROM manifests WHERE digest = $1"
    manifests = "SELECT digest, media_type, size, refs, cached_at FROM manifests ORDER BY digest"

    add_repository = "INSERT INTO repositories VALUES ($1, $2) ON CONFLICT DO NOTHING"
    repositories = "SELECT upstream, repo FROM repositories ORDER BY upstream, repo"

    link = "INSERT INTO links SELECT $1, $2, d FROM unnest($3::text[]) AS d ON CONFLICT DO NOTHING"
    linked = "SELECT 1 FROM links WHERE upstream = $1 AND repo = $2 AND digest = $3"
    links_under = (
        "SELECT upstream, repo, digest FROM links WHERE starts_with(upstream, $1)"
        " ORDER BY upstream, repo, digest"
    )
    drop_link = "DELETE FROM links WHERE upstream = $1 AND repo = $2 AND digest = $3 RETURNING 1"
    unlink = (
        "WITH gone AS (DELETE FROM links WHERE upstream = $1 AND repo = $2 RETURNING 1)"
        " SELECT count(*) FROM gone"
    )

    tag_history = (
        "SELECT tag, from_digest, to_digest, at FROM tag_moves"
        " WHERE upstream = $1 AND repo = $2 ORDER BY id"
    )
    # Every move of a tag away from a digest, each repository's oldest first.
    untagged = (
        "SELECT upstream, repo, from_digest, at FROM tag_moves"
        " WHERE from_digest IS NOT NULL ORDER BY upstream, repo, id"
    )
    evict_tags = (
        "DELETE FROM tags WHERE upstream = $1 AND repo = $2 AND digest = $3"
        " AND ($4::text[] IS NULL OR tag = ANY($4::text[])) RETURNING tag"
    )
    drop_pull = "DELETE FROM pulls WHERE upstream = $1 AND repo = $2 AND digest = $3"
    drop_moves_of = (
        "DELETE FROM tag_moves WHERE upstream = $1 AND repo = $2"
        " AND (from_digest = $3 OR to_digest = $3)"
    )
    drop_moves_of_all = (
        "DELETE FROM tag_moves WHERE upstream = $1 AND repo = $2"
        " AND (from_digest = ANY($3::text[]) OR to_digest = ANY($3::text[]))"
    )
    forget_empty = """
        WITH c AS (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS c(upstream, repo)),
        empty AS (
            SELECT c.upstream, c.repo FROM c
            WHERE NOT EXISTS (SELECT 1 FROM tags t
                              WHERE t.upstream = c.upstream AND t.repo = c.repo)
            AND NOT EXISTS (SELECT 1 FROM pulls p
                            WHERE p.upstream = c.upstream AND p.repo = c.repo)
        ),
        r AS (DELETE FROM repositories x USING empty e
              WHERE x.upstream = e.upstream AND x.repo = e.repo),
        h AS (DELETE FROM tag_moves x USING empty e
              WHERE x.upstream = e.upstream AND x.repo = e.repo),
        s AS (DELETE FROM responses x USING empty e
              WHERE x.upstream = e.upstream AND x.repo = e.repo)
        SELECT upstream, repo FROM empty
    """
    forget_upstream = """
        WITH l AS (DELETE FROM links WHERE upstream = $1 RETURNING 1),
        t AS (DELETE FROM tags WHERE upstream = $1 RETURNING 1),
        h AS (DELETE FROM tag_moves WHERE upstream = $1 RETURNING repo),
        p AS (DELETE FROM pulls WHERE upstream = $1 RETURNING 1),
        s AS (DELETE FROM responses WHERE upstream = $1 RETURNING 1),
        r AS (DELETE FROM repositories WHERE upstream = $1 RETURNING 1),
        d AS (DELETE FROM deletions WHERE upstream = $1 RETURNING 1)
        SELECT (SELECT count(*) FROM l) + (SELECT count(*) FROM t)
            + (SELECT count(DISTINCT repo) FROM h) + (SELECT count(*) FROM p)
            + (SELECT count(*) FROM s) + (SELECT count(*) FROM r) + (SELECT count(*) FROM d)
    """

    bury = (
        "INSERT INTO deletions VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (upstream, repo, digest) DO UPDATE SET at = EXCLUDED.at"
    )
    unbury = "DELETE FROM deletions WHERE upstream = $1 AND repo = $2 AND digest = $3"
    deletions_under = (
        "SELECT upstream, repo, digest, at FROM deletions WHERE starts_with(upstream, $1)"
    )
    tagged_under = "SELECT upstream, repo, digest FROM tags WHERE starts_with(upstream, $1)"

    response = (
        "SELECT body, content_type, headers, fetched_at FROM responses"
        " WHERE kind = $1 AND upstream = $2 AND repo = $3 AND key = $4"
    )
    set_response = (
        "INSERT INTO responses VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (kind, upstream, repo, key) DO UPDATE SET body = EXCLUDED.body,"
        " content_type = EXCLUDED.content_type, headers = EXCLUDED.headers,"
        " fetched_at = EXCLUDED.fetched_at"
    )

    last_pull = "SELECT at FROM pulls WHERE upstream = $1 AND repo = $2 AND digest = $3"
    pulls = "SELECT upstream, repo, digest, at FROM pulls"
    flush_pulls = (
        "INSERT INTO pulls SELECT * FROM"
        " unnest($1::text[], $2::text[], $3::text[], $4::float8[])"
        " ON CONFLICT (upstream, repo, digest) DO UPDATE SET at = GREATEST(pulls.at, EXCLUDED.at)"
    )
