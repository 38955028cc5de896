"""Online schema and data change under load (SX-RDS-6)."""
