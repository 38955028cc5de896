"""Failover, consensus and recovery under load (BZ-DB-1, SX-RDS-3): client histories and their judge."""
