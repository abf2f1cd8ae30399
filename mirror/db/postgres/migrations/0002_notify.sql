-- Changes other replicas may hold in their read memo are announced on channel mirror_metadata
-- as a JSON array [origin, kind, *key]; origin is the writer's application_name, so a
-- replica skips its own. Inserts need no notice: only records that exist are memoised.

CREATE FUNCTION mirror_notify_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mirror_metadata', json_build_array(
        current_setting('application_name'), 'tag', OLD.upstream, OLD.repo, OLD.tag)::text);
    RETURN NULL;
END $$;

CREATE FUNCTION mirror_notify_manifest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mirror_metadata', json_build_array(
        current_setting('application_name'), 'manifest', OLD.digest)::text);
    RETURN NULL;
END $$;

CREATE FUNCTION mirror_notify_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mirror_metadata', json_build_array(
        current_setting('application_name'), 'link', OLD.upstream, OLD.repo, OLD.digest)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER tags_notify AFTER UPDATE OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION mirror_notify_tag();
CREATE TRIGGER manifests_notify AFTER UPDATE OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION mirror_notify_manifest();
CREATE TRIGGER links_notify AFTER DELETE ON links
    FOR EACH ROW EXECUTE FUNCTION mirror_notify_link();
