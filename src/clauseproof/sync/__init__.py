"""Data synchronisation (BZ-SYNC-2…7): the cross-engine consistency checker, the sync runs and their judges."""
