"""clusters: see docs/architecture.md."""
