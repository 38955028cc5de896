"""single: see docs/architecture.md."""
