"""The run's vocabulary: errors, units, settings, the clause catalog, evidence and verdicts, the report, the
machine's environment, vendor command templates, and the reaper's registry. Imports nothing above it.
"""
