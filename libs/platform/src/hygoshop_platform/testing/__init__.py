"""Pytest plugins shared by every package's tests (load with `pytest_plugins = [...]`)."""
