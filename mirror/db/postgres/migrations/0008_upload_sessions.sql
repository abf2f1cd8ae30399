-- Which replica holds each chunked upload session (mirror.db.postgres.uploads): the staged
-- bytes stay on that replica's disk; a replica the load balancer sends a later request of the
-- session to (a ring change, a replica nginx passed over for a while) forwards it there. A
-- session is forgotten when it commits or is cancelled; rows a week old go (expired).

CREATE TABLE upload_sessions (
    uuid text PRIMARY KEY,
    replica text NOT NULL,
    tenancy text NOT NULL,
    repo text NOT NULL,
    started double precision NOT NULL
);
CREATE INDEX upload_sessions_by_start ON upload_sessions (started);
