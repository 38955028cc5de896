"""Backup and restore (BZ-DB-4e/4f, SX-RDS-4): commands timed around the command only, work folders, vendor
commands.
"""
