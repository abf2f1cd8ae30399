"""A regional tier: replicas that share the blob cache by consistent hashing on the digest."""
