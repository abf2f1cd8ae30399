-- The retention audit log of a tier (mirror.db.postgres.audit): every run, eviction, hosted
-- unlink and blob deletion of every replica, one row each, written by the replica that acted
-- (which keeps its own JSON-lines file too). Any replica reads the tier's whole log.

CREATE TABLE audit_events (
    id bigserial PRIMARY KEY,
    at double precision NOT NULL,
    replica text NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (at);
