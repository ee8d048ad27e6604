"""Workflows: durable runs of versioned workflow types (steps, timers, signals, leases) and operator tasks."""
