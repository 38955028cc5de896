"""containers: see docs/architecture.md."""
