"""``mirror bench``: pull, push and manifest latency of any OCI registry or mirror."""
