"""Bulk load and the data sets (BZ-DB-3a/3b, and the 1 GiB data set of the backup suite): generation, the cache of
built data directories.
"""
