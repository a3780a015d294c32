"""Peers measured beside Chicory: taskiq (taskiq-redis) and Dramatiq (Redis broker) in
``benchmarks/run.py``; pgqueuer and procrastinate on PostgreSQL in
``benchmarks/postgres_peers.py``."""
