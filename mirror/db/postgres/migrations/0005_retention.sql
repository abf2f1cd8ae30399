-- The retention state of mirror.db.retention shared by the replicas of a tier: the policy
-- state (policies and their repositories) and the hosted links found unreferenced, one JSON
-- row per key. Deferred blob deletions stay on each replica (they name blobs it holds).
-- A retention run holds the session advisory lock mirror.db.postgres.retention.RUN_LOCK for
-- its whole length, so one run at a time happens across the tier.

CREATE TABLE retention_state (
    key text PRIMARY KEY,
    body jsonb NOT NULL
);
