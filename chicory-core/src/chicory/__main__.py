"""``python -m chicory``: the command line."""

from chicory.cli import main

raise SystemExit(main())
