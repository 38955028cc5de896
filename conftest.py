"""Root conftest: only wires fixture modules; the plugin itself is the clauseproof entry point."""

pytest_plugins = (
    "fixtures.targets",
    "fixtures.backup",
    "fixtures.replication",
    "fixtures.failover",
    "fixtures.sync",
    "fixtures.gateway",
    "fixtures.cloud",
)
