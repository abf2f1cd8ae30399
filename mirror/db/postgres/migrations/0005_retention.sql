-- The retention state of mirror.db.retention shared by the replicas of a tier: the policy
-- state (policies and their repositories) and the hosted links found unreferenced, one JSON
-- row per key. Deferred blob deletions stay on each replica (they name blobs it holds).
-- A retention run holds the session advisory lock mirror.db.postgres.retention.RUN_LOCK for
-- its whole length, so one run at a time happens across the tier.

CREATE TABLE retention_state (
    key text PRIMARY KEY,
    body jsonb NOT NULL
);

-- What the lock holder's runs released that they could not delete themselves (blobs another
-- replica holds, or in use): every replica reads the rows after the last it read (kept in its
-- own data directory), deletes those it holds once nothing refers to them, and ignores the
-- rest. A run announces new rows on channel mirror_retention; rows older than a week go.
CREATE TABLE retention_released (
    id bigserial PRIMARY KEY,
    digest text NOT NULL,
    since double precision NOT NULL
);
