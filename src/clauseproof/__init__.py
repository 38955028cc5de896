"""clauseproof: acceptance tests and benchmarks that prove procurement clauses."""

__version__ = "0.1.0"
