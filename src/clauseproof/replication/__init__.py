"""Replication and read/write split (SX-RDS-2a/b/c): replicas verified as servers of their own, write placement,
read balance, lag.
"""
