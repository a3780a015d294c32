"""Peers measured beside Chicory: taskiq (taskiq-redis) and Dramatiq (Redis broker)."""
