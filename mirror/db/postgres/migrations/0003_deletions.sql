-- Deletion notes of hosted repositories (mirror.db.metadata.Metadata.bury): a client or a
-- policy deleted a digest from a repository at a time; the hosted garbage collection reclaims
-- what only it referred to there after hosted.gc_grace, then forgets the note.

CREATE TABLE deletions (
    upstream text NOT NULL,
    repo text NOT NULL,
    digest text NOT NULL,
    at double precision NOT NULL,
    PRIMARY KEY (upstream, repo, digest)
);
