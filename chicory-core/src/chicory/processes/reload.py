"""``chicory worker --reload``: restart the workers when the app's Python files change.

For development only: a restart drains every worker (running tasks finish within the drain
timeout), and a half-saved file can make the new workers fail to start. It watches with
`watchfiles <https://watchfiles.helpmanual.io/>`_, an optional dependency
(``pip install 'chicory-core[reload]'``); nothing imports it unless ``--reload`` is given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from chicory.errors import ConfigurationError

__all__ = ["RELOAD_HINT", "ReloadWatcher"]

log = logging.getLogger("chicory.processes")

RELOAD_HINT = "pip install 'chicory-core[reload]'"


class ReloadWatcher:
    """Watches ``paths`` for changed ``.py`` files in a thread of its own.

    Args:
        paths: Directories to watch (recursively).

    Raises:
        ConfigurationError: watchfiles is not installed.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ConfigurationError(
                f"--reload needs the watchfiles package, which is not installed; install it "
                f"with: {RELOAD_HINT}"
            ) from None
        self._watchfiles = watchfiles
        self.paths = list(paths)
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chicory-reload", daemon=True)

    def start(self) -> None:
        """Start watching."""
        log.warning("watching %s for changes (--reload: for development only)", self.paths)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()

    def changed(self) -> bool:
        """Whether a watched file changed since the last call."""
        if self._changed.is_set():
            self._changed.clear()
            return True
        return False

    def _watch(self) -> None:
        watch_filter = self._watchfiles.PythonFilter()
        for changes in self._watchfiles.watch(
            *self.paths, watch_filter=watch_filter, stop_event=self._stop, rust_timeout=500
        ):
            names = sorted({path for _, path in changes})
            log.warning("changed: %s", ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
            self._changed.set()
