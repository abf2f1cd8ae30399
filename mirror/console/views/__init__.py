"""One module per console page (or group of forms on it)."""
