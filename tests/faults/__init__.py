"""Fault-catalogue tests (docs/reliability.md); README.md maps entries to tests."""
