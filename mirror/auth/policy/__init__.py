"""Policy statements in the cloud registry's grammar, and their evaluation (pure)."""
