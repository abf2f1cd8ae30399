"""The only place that wires things: configuration in, a running aiohttp application out."""
