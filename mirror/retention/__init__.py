"""Retention: policies that select cached images for deletion, the garbage collection that
follows, and the cache size limit."""
