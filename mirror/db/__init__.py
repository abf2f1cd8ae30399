"""Everything persisted that is not object bytes: metadata, retention state, identity, the lock."""
