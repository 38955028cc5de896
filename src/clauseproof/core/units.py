"""Metrics, the units each may be stated in, and conversions between them."""

from __future__ import annotations

#: metric -> {unit: factor to the metric's base unit}
METRIC_UNITS: dict[str, dict[str, float]] = {
    "duration": {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0},
    "throughput": {"rows/s": 1.0},
    "capacity": {"vCPU": 1.0, "GB": 1.0, "TB": 1.0, "CU": 1.0},
    "count": {"replicas": 1.0, "project spaces": 1.0, "vms": 1.0},
    "ratio": {"%": 1.0},
    "size": {"bytes": 1.0, "MB": 1e6, "GB": 1e9},
    "capability": {"bool": 1.0},
}

COMPARATORS = ("<", "<=", ">", ">=", "==")


def units_for(metric: str) -> list[str]:
    """The units a metric may be stated in (empty for an unknown metric)."""
    return list(METRIC_UNITS.get(metric, {}))


def convert(value: float, from_unit: str, to_unit: str, metric: str) -> float:
    """Convert ``value`` between two units of the same metric."""
    table = METRIC_UNITS[metric]
    if metric == "capacity" and from_unit != to_unit:
        raise ValueError(f"capacity units {from_unit!r} and {to_unit!r} are not convertible")
    return value * table[from_unit] / table[to_unit]
