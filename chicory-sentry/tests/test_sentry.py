"""chicory-sentry against the real Sentry SDK, with a transport that keeps what it would send."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from chicory import Chicory, RetryPolicy, TaskContext, TaskFailedError, Worker
from chicory_sentry import SentryMiddleware


class Capturing(Transport):
    """Keeps every envelope instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]


@pytest.fixture
def transport() -> Iterator[Capturing]:
    capturing = Capturing()
    sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=capturing)
    try:
        yield capturing
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)  # no client, for the tests that follow


def build(middleware: SentryMiddleware) -> Chicory:
    app = Chicory(
        broker="memory://",
        backend="memory://",
        middleware=[middleware],
        retry_policy=RetryPolicy(max_retries=1, delay=0),
    )

    @app.task(name="mail.send")
    async def send(address: str, body: str) -> None:
        raise ConnectionRefusedError(f"smtp refused {address}")

    @app.task(name="mail.flaky")
    async def flaky(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            raise TimeoutError("slow server")
        return ctx.attempt

    @app.task(name="mail.asks")
    async def asks(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            ctx.retry(countdown=0)
        return ctx.attempt

    return app


async def run(app: Chicory, *calls: tuple[str, tuple[Any, ...]]) -> list[Any]:
    """Run the calls one after another; return their values (``"failed"`` for failures)."""
    outcomes: list[Any] = []
    worker = Worker(app, heartbeat_interval=0, fetch_timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        for name, args in calls:
            try:
                outcomes.append(await (await app.tasks[name].delay(*args)).get(timeout=10))
            except TaskFailedError:
                outcomes.append("failed")
        worker.stop()
    await app.close()
    return outcomes


async def test_a_failed_task_is_one_event_with_its_context(transport: Capturing) -> None:
    app = build(SentryMiddleware(max_args_length=40))
    logging.getLogger("chicory.task").error("a line Sentry's logging integration must ignore")
    await run(app, ("mail.send", ("ann@example.com", "x" * 500)), ("mail.flaky", ()))
    sentry_sdk.flush()
    (event,) = transport.events()  # the retried attempts and the logged lines are not events
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ConnectionRefusedError"
    assert exception["value"] == "smtp refused ann@example.com"
    assert exception["mechanism"] == {"type": "chicory", "handled": False}
    assert event["tags"] == {"chicory.task": "mail.send", "chicory.queue": "default"}
    context = event["contexts"]["chicory"]
    assert (context["task_name"], context["attempt"], context["queue"]) == (
        "mail.send",
        2,
        "default",
    )
    assert len(context["task_id"]) == 32
    assert context["args"].startswith('["ann@example.com","xxx')
    assert context["args"].endswith("... (522 characters)")


async def test_retries_are_reported_when_asked(transport: Capturing) -> None:
    app = build(SentryMiddleware(report_retries=True))
    await run(app, ("mail.flaky", ()), ("mail.asks", ()))
    sentry_sdk.flush()
    (event,) = transport.events()  # the failed first attempt; ctx.retry() is no error
    assert event["exception"]["values"][0]["type"] == "TimeoutError"
    assert event["contexts"]["chicory"]["attempt"] == 1


async def test_without_sentry_initialised_tasks_run_as_usual() -> None:
    assert not sentry_sdk.get_client().is_active()
    app = build(SentryMiddleware())
    assert await run(app, ("mail.flaky", ()), ("mail.send", ("a@b.c", ""))) == [2, "failed"]
