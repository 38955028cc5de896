"""gateways: see docs/architecture.md."""
