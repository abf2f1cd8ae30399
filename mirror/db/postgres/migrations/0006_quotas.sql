-- Hosted quotas shared by the replicas of a tier (mirror.db.postgres.quota). A tenancy's usage
-- is derived from the shared links of its hosted key 'hosted:<tenancy>' and the verified size
-- of each object, recorded here when a push that reserved it commits; so a link or an unlink
-- at any replica (a push, a delete, the collector) is seen by every replica at once.
-- Every admission locks the tenancy's row of quota_tenancies first: the check of the limit
-- and the reservation it grants are one step across the tier.

CREATE TABLE quota_tenancies (
    tenancy text PRIMARY KEY
);

-- An operator's limits of one tenancy (NULL: unlimited); absent, the configured default.
CREATE TABLE quota_limits (
    tenancy text PRIMARY KEY,
    bytes bigint,
    repositories bigint
);

-- The verified size of each object a hosted repository links (one size per digest).
CREATE TABLE quota_sizes (
    digest text PRIMARY KEY,
    size bigint NOT NULL
);

-- Repositories admitted before anything is linked to them (a push in flight, a created
-- repository record).
CREATE TABLE quota_repositories (
    tenancy text NOT NULL,
    repo text NOT NULL,
    PRIMARY KEY (tenancy, repo)
);

-- Bytes held for pushes in flight. holder is the application_name of the replica's
-- connection pool: a reservation of a replica that is gone (its connections closed) or past
-- expires no longer counts and is deleted by the next admission.
CREATE TABLE quota_reservations (
    id bigserial PRIMARY KEY,
    tenancy text NOT NULL,
    digest text NOT NULL,
    bytes bigint NOT NULL,
    holder text NOT NULL,
    expires double precision NOT NULL
);
CREATE INDEX quota_reservations_by_tenancy ON quota_reservations (tenancy);
CREATE INDEX links_by_digest ON links (upstream, digest);

-- Bytes tenancy t stores: each linked object with a known size, once.
CREATE FUNCTION mirror_quota_stored(t text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT COALESCE(SUM(s.size), 0)::bigint
    FROM (SELECT DISTINCT digest FROM links WHERE upstream = 'hosted:' || t) l
    JOIN quota_sizes s USING (digest)
$$;

-- Bytes reserved in tenancy t, except for objects it already stores (a push linked, not yet
-- committed its reservation: counted once).
CREATE FUNCTION mirror_quota_held(t text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT COALESCE(SUM(q.bytes), 0)::bigint FROM quota_reservations q
    WHERE q.tenancy = t AND NOT EXISTS (
        SELECT 1 FROM links l JOIN quota_sizes s USING (digest)
        WHERE l.upstream = 'hosted:' || t AND l.digest = q.digest)
$$;

-- The repositories of tenancy t: those it links content in, has records of, or admitted.
CREATE FUNCTION mirror_quota_repositories(t text) RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT repo FROM links WHERE upstream = 'hosted:' || t
    UNION SELECT repo FROM repositories WHERE upstream = 'hosted:' || t
    UNION SELECT repo FROM quota_repositories WHERE tenancy = t
$$;

-- Admit repository r of tenancy t and, when d is not NULL, reserve n bytes for object d on
-- its way into r (nothing when t stores d already). One row: the reservation's id (NULL when
-- nothing is held) and, for a refusal, the quota passed, its use, what was asked and the limit.
CREATE FUNCTION mirror_quota_admit(
    t text, r text, d text, n bigint, default_bytes bigint, default_repositories bigint,
    now_ double precision, timeout double precision, who text
) RETURNS TABLE (reservation bigint, quota text, used bigint, adding bigint, lim bigint)
LANGUAGE plpgsql AS $$
DECLARE
    lb bigint := default_bytes;
    lr bigint := default_repositories;
    count_ bigint;
    held bigint;
    add bigint := n;
BEGIN
    INSERT INTO quota_tenancies VALUES (t) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM quota_tenancies WHERE tenancy = t FOR UPDATE;
    SELECT l.bytes, l.repositories INTO lb, lr FROM quota_limits l WHERE l.tenancy = t;
    IF NOT FOUND THEN
        lb := default_bytes;
        lr := default_repositories;
    END IF;
    DELETE FROM quota_reservations q WHERE q.tenancy = t AND (q.expires <= now_
        OR q.holder NOT IN (SELECT application_name FROM pg_stat_activity
                            WHERE application_name IS NOT NULL));
    IF lr IS NOT NULL AND r NOT IN (SELECT * FROM mirror_quota_repositories(t)) THEN
        SELECT count(*) INTO count_ FROM mirror_quota_repositories(t);
        IF count_ + 1 > lr THEN
            RETURN QUERY SELECT NULL::bigint, 'repositories'::text, count_, 1::bigint, lr;
            RETURN;
        END IF;
    END IF;
    INSERT INTO quota_repositories VALUES (t, r) ON CONFLICT DO NOTHING;
    IF d IS NULL THEN
        RETURN QUERY SELECT NULL::bigint, NULL::text, 0::bigint, 0::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM links l JOIN quota_sizes s USING (digest)
               WHERE l.upstream = 'hosted:' || t AND l.digest = d) THEN
        add := 0;
    END IF;
    IF add > 0 AND lb IS NOT NULL THEN
        held := mirror_quota_stored(t) + mirror_quota_held(t);
        IF held + add > lb THEN
            RETURN QUERY SELECT NULL::bigint, 'bytes'::text, held, add, lb;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY INSERT INTO quota_reservations (tenancy, digest, bytes, holder, expires)
        VALUES (t, d, add, who, now_ + timeout)
        RETURNING id, NULL::text, 0::bigint, add, NULL::bigint;
END $$;

-- Reservation id's object is stored and linked: record its verified size, free the bytes.
CREATE FUNCTION mirror_quota_commit(id_ bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO quota_sizes (digest, size)
        SELECT digest, bytes FROM quota_reservations WHERE id = id_ AND bytes > 0
        ON CONFLICT DO NOTHING;
    DELETE FROM quota_reservations WHERE id = id_;
$$;
