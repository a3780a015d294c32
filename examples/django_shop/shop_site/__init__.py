"""The example Django project: settings, URLs and the Chicory app."""
