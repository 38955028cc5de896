"""Self-test wiring: fixture modules only."""

pytest_plugins = ("pytester", "tests.fix_targets")
