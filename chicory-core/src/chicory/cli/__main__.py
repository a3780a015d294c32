"""``python -m chicory.cli``: the same as the ``chicory`` command."""

from chicory.cli import main

raise SystemExit(main())
