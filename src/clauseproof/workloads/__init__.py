"""Workloads: data generators and (later) Locust users, one module per workload."""
