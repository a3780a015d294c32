"""Orders: created by a view, fulfilled by a Chicory task once the order is committed."""
