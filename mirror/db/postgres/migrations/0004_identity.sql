-- The identity store of mirror.db.identity (tenancies, users, groups, tokens, policies,
-- repositories, pull-through rules) shared by the replicas of a tier: one row per record,
-- keyed as the embedded store keys it (kind, then up to two names), the record as JSON
-- (mirror.db.identity.codec). Any change is announced on channel mirror_identity with the
-- writer's application_name, so the other replicas forget their memoised lookups.

CREATE TABLE identity_records (
    kind text NOT NULL,
    k1 text NOT NULL,
    k2 text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (kind, k1, k2)
);

CREATE FUNCTION mirror_notify_identity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mirror_identity', current_setting('application_name'));
    RETURN NULL;
END $$;

CREATE TRIGGER identity_notify AFTER INSERT OR UPDATE OR DELETE ON identity_records
    FOR EACH STATEMENT EXECUTE FUNCTION mirror_notify_identity();

-- Failed logins counted across the tier (mirror.auth.throttle semantics): failures per source
-- and login name within a window; a source whose failures reach the limit is locked out.
CREATE TABLE login_failures (
    source text NOT NULL,
    username text NOT NULL,
    at double precision NOT NULL
);
CREATE INDEX login_failures_by_source ON login_failures (source, username);
CREATE INDEX login_failures_by_time ON login_failures (at);

CREATE TABLE login_lockouts (
    source text PRIMARY KEY,
    until double precision NOT NULL
);

-- Count one failure of (src, usr) at now_; returns when the source is locked out until, or
-- NULL. The source's rows are serialised by a transaction advisory lock, so failures arriving
-- at two replicas at once are both counted and lock the source out once.
CREATE FUNCTION mirror_login_failed(
    src text, usr text, now_ double precision, window_ double precision, max_ integer,
    lockout double precision
) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('mirror-login:' || src));
    DELETE FROM login_failures WHERE at <= now_ - window_;
    DELETE FROM login_lockouts WHERE until <= now_;
    INSERT INTO login_failures VALUES (src, usr, now_);
    SELECT count(*) INTO n FROM login_failures WHERE source = src;
    IF n >= max_ THEN
        INSERT INTO login_lockouts VALUES (src, now_ + lockout)
            ON CONFLICT (source) DO UPDATE SET until = EXCLUDED.until;
        DELETE FROM login_failures WHERE source = src;
        RETURN now_ + lockout;
    END IF;
    RETURN NULL;
END $$;
