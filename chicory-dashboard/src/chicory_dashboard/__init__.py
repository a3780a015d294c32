"""The Chicory dashboard: a small web UI over :class:`chicory.admin.Admin`."""
