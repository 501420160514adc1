"""The pure core: configurations, parameters, identifiers, serialization, tags (no I/O)."""
