"""Chicory: an async-native task queue with pluggable brokers and explicit delivery guarantees."""
