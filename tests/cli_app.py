"""The app the CLI and dashboard tests operate (``cli_app:app``), in-process and in workers.

The broker comes from ``CHICORY_BROKER_URL`` (memory:// when unset). An outage is simulated
through the file named by ``CHICORY_TEST_OUTAGE``: while it holds a number, that many more
runs of ``shop.charge`` and ``shop.email`` fail (``inf``: all of them); the file is shared by
every process, so a test can end the outage for worker processes too.
"""

from __future__ import annotations

import os
from pathlib import Path

from chicory import Chicory, RetryPolicy

app = Chicory(retry_policy=RetryPolicy(max_retries=2, delay=0.01, backoff="fixed"))


def outage() -> None:
    """Raise while the outage file says so (counting down a finite outage)."""
    path = Path(os.environ.get("CHICORY_TEST_OUTAGE", os.devnull))
    text = path.read_text().strip() if path.is_file() else ""
    if not text or text == "0":
        return
    if text != "inf":
        path.write_text(str(int(text) - 1))
    raise ConnectionError("payment gateway down")


def set_outage(path: Path, runs: int | None) -> None:
    """Make the next ``runs`` runs fail (``None``: every run), or end the outage (0)."""
    path.write_text("inf" if runs is None else str(runs))


@app.task(name="shop.charge", queue="billing")
async def charge(order: str, amount: float) -> str:
    outage()
    return f"charged {amount} for {order}"


@app.task(name="shop.email")
def email(to: str) -> str:
    outage()
    return f"mailed {to}"


@app.task(name="shop.add")
async def add(x: int, y: int) -> int:
    return x + y
