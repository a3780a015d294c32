"""Chicory: an async-native task queue with pluggable brokers and explicit delivery guarantees.

Quick start::

    from chicory import Chicory, DeliveryMode

    app = Chicory()  # memory:// unless CHICORY_BROKER_URL is set

    @app.task(delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def add(x: int, y: int) -> int:
        return x + y

    result = await add.delay(1, 2)
    assert await result.get(timeout=10) == 3
"""

from chicory.app import Chicory
from chicory.backend import ResultBackend
from chicory.broker import Broker, Capabilities, Consumer, DeadLetter, Delivery, QueueCounts
from chicory.context import Fail, Retry, TaskContext
from chicory.errors import (
    ArgumentValidationError,
    ChicoryError,
    ConfigurationError,
    InvalidHeaderError,
    MessageDecodeError,
    MessageTooLargeError,
    PublishOutcomeUnknownError,
    TaskCancelledError,
    TaskFailedError,
    TaskSoftTimeoutError,
    TaskTimeoutError,
    UnknownBackendError,
    UnknownTaskError,
)
from chicory.middleware import Middleware
from chicory.modes import DeliveryMode, ValidationMode
from chicory.records import TaskState
from chicory.result import AsyncResult
from chicory.retry import RetryPolicy
from chicory.task import Task
from chicory.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "ArgumentValidationError",
    "AsyncResult",
    "Broker",
    "Capabilities",
    "Chicory",
    "ChicoryError",
    "ConfigurationError",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "DeliveryMode",
    "Fail",
    "InvalidHeaderError",
    "MessageDecodeError",
    "MessageTooLargeError",
    "Middleware",
    "PublishOutcomeUnknownError",
    "QueueCounts",
    "ResultBackend",
    "Retry",
    "RetryPolicy",
    "Task",
    "TaskCancelledError",
    "TaskContext",
    "TaskFailedError",
    "TaskSoftTimeoutError",
    "TaskState",
    "TaskTimeoutError",
    "UnknownBackendError",
    "UnknownTaskError",
    "ValidationMode",
    "Worker",
]
