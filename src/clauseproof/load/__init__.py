"""Background load: the Locust OLTP workload in separate processes, its per-second series, stopped with the run."""
