"""``chicory dashboard APP``: the dashboard served alone, by uvicorn."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from chicory import Chicory
from chicory_dashboard.app import create_dashboard

__all__ = ["build", "serve"]

log = logging.getLogger("chicory.dashboard")


def build(app: Chicory, **options: Any) -> Starlette:
    """The standalone application: the dashboard at ``/``, sampling charts in the
    background, closing ``app`` when it shuts down."""
    dashboard = create_dashboard(app, sample_in_background=True, **options)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with dashboard.router.lifespan_context(dashboard):
            try:
                yield
            finally:
                await app.close()

    return Starlette(routes=[Mount("/", dashboard)], lifespan=lifespan)


def serve(app: Chicory, *, host: str, port: int, log_level: str = "INFO", **options: Any) -> None:
    """Serve the dashboard of ``app`` on ``host:port`` until interrupted.

    Args:
        app: The Chicory app.
        host: Address to listen on.
        port: Port to listen on.
        log_level: uvicorn's log level.
        **options: Options of :func:`~chicory_dashboard.create_dashboard`.
    """
    log.info(
        "Chicory dashboard for %s on http://%s:%d/ (%s)",
        app.broker_description,
        host,
        port,
        "actions allowed" if options.get("allow_actions") else "read-only",
    )
    uvicorn.run(build(app, **options), host=host, port=port, log_level=log_level.lower())
