"""The shared metadata store of a regional tier, in PostgreSQL (asyncpg)."""
