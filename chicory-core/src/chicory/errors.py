"""Every error Chicory raises, under one root.

Names end in ``Error`` and say what went wrong; messages say what to do about it.
Control-flow signals raised *inside* tasks (``Retry``, ``Fail``) live in
:mod:`chicory.context` and are not errors.
"""

from __future__ import annotations


class ChicoryError(Exception):
    """Root of every exception raised by Chicory."""


class ConfigurationError(ChicoryError):
    """The app, a task or a worker was configured with a value that cannot work."""


class UnknownBackendError(ConfigurationError):
    """No installed plugin provides the requested broker or result backend."""


class DuplicateBackendError(ConfigurationError):
    """Two installed plugins claim the same backend name or URL scheme."""


class TaskRegistrationError(ConfigurationError):
    """A task could not be registered (duplicate name, unsupported signature...)."""


class InvalidHeaderError(ConfigurationError, ValueError):
    """A message header that cannot be sent: a bad or reserved name, a value that is not a
    string, or headers too large (see :mod:`chicory.headers`)."""


class UnknownMiddlewareError(ConfigurationError):
    """No installed plugin offers middleware of the requested name."""


class UnknownTaskError(ChicoryError):
    """A message names a task that this worker does not know."""


class ArgumentValidationError(ChicoryError, TypeError):
    """Task arguments do not match the task's signature or type hints.

    Attributes:
        task_name: The task whose arguments were rejected.
        parameter: The offending parameter, when one can be named.
    """

    def __init__(self, task_name: str, message: str, parameter: str | None = None) -> None:
        self.task_name = task_name
        self.parameter = parameter
        where = f" (parameter {parameter!r})" if parameter else ""
        super().__init__(f"invalid arguments for task {task_name!r}{where}: {message}")


class ResultValidationError(ChicoryError, TypeError):
    """A task returned a value that does not match its return annotation."""


class ResultTooLargeError(ResultValidationError):
    """A task returned a value whose stored record would exceed ``max_result_bytes``.

    The run counts as failed and is not retried (the result would not fit the next time
    either): store large data elsewhere and return a reference to it, or raise the task's
    ``max_result_bytes``.
    """


class MessageDecodeError(ChicoryError):
    """A message body is not a valid Chicory envelope (corrupt, foreign or tampered)."""


class MessageTooLargeError(ChicoryError, ValueError):
    """An encoded message is larger than the configured ``max_message_bytes``."""


class BrokerError(ChicoryError):
    """A broker operation failed."""


class BrokerConnectionError(BrokerError):
    """The broker could not be reached; the operation may be retried.

    From a publish, this error means the message was *not* enqueued: a retry cannot
    duplicate it. A publish that may have reached the broker raises
    :class:`PublishOutcomeUnknownError` instead.
    """


class PublishOutcomeUnknownError(BrokerError):
    """A publish failed after the message may have reached the broker.

    The connection failed or timed out after the message was sent, so it may or may not be
    enqueued (and may be delivered later, for example once a hung server resumes). A plain
    retry may enqueue it twice: retry only a task that is safe to run twice, or look for
    its result first.

    Attributes:
        task_ids: The ids of the tasks whose publish this was, when core knows them.
    """

    def __init__(self, message: str, task_ids: tuple[str, ...] = ()) -> None:
        self.task_ids = task_ids
        super().__init__(message)


class AuthenticationFailedError(ChicoryError):
    """A server refused the configured credentials (wrong password or user, or an ACL
    that does not allow the command). Retrying with the same settings does not help."""


class BrokerAuthenticationError(BrokerError, AuthenticationFailedError):
    """The broker refused the configured credentials or permissions."""


class DeliveryStateError(BrokerError):
    """A delivery was settled in a way its state forbids (for example, acked after close)."""


class CapabilityError(BrokerError):
    """The broker lacks a capability the caller needs (for example, delayed delivery)."""


class IllegalTransitionError(ChicoryError):
    """The worker state machine was asked for a transition its table does not allow."""


class ResultBackendError(ChicoryError):
    """A result backend operation failed."""


class WorkflowError(ChicoryError):
    """A workflow cannot be built or sent (an empty group, a step that cannot take the
    previous step's result); also the error type recorded on the steps a failure left
    unrun (see :mod:`chicory.workflow`)."""


class ResultBackendAuthenticationError(ResultBackendError, AuthenticationFailedError):
    """The result backend refused the configured credentials or permissions."""


class TaskFailedError(ChicoryError):
    """The awaited task finished in failure.

    Attributes:
        task_id: The failed task's id.
        exc_type: Qualified name of the exception raised in the worker.
        exc_message: ``str()`` of that exception.
        traceback: The formatted remote traceback, when it was recorded.
    """

    def __init__(
        self, task_id: str, exc_type: str, exc_message: str, traceback: str | None = None
    ) -> None:
        self.task_id = task_id
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.traceback = traceback
        super().__init__(f"task {task_id} failed: {exc_type}: {exc_message}")


class TaskTimeoutError(ChicoryError, TimeoutError):
    """A task ran longer than its ``timeout`` (its hard time limit) and was stopped.

    Recorded as the failure of that attempt (retried if its policy says so). Raised *inside*
    a sync task's thread when the limit passes, to stop pure-Python code at its next line
    (see :mod:`chicory.timelimits`).
    """

    def __init__(self, message: str = "the task ran past its time limit") -> None:
        super().__init__(message)


class TaskSoftTimeoutError(TaskTimeoutError):
    """Raised inside a task that ran past its ``soft_timeout``: catch it to clean up.

    The hard limit (``timeout``) still applies after it. Not caught, it fails the attempt
    like any exception (a retry policy that retries :class:`TaskTimeoutError` retries it).
    """

    def __init__(self, message: str = "the task ran past its soft time limit") -> None:
        super().__init__(message)


class TaskCancelledError(ChicoryError):
    """The awaited task was cancelled (its record is ``CANCELLED``).

    Attributes:
        task_id: The cancelled task's id.
        reason: Why, as the worker recorded it.
    """

    def __init__(self, task_id: str, reason: str = "cancelled") -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id} was cancelled: {reason}")

    """A task ran longer than its ``timeout`` and was cancelled by the worker."""


class EventLoopMismatchError(ChicoryError, RuntimeError):
    """An app's connections belong to an event loop still running in another thread.

    Connections made on one event loop cannot be used from another. Call the app from the
    loop it connected on, use the blocking API (``task.blocking``) from other threads, or give
    each event loop an app of its own.
    """


class BlockingCallError(ChicoryError, RuntimeError):
    """A blocking call (``task.blocking...``) was made from inside a running event loop.

    Blocking there would stall every other task of that loop; ``await`` the async API
    (``await task.delay(...)``) instead.
    """


class ForkedAppError(ChicoryError, RuntimeError):
    """The app was connected before this process was forked, with broker or backend instances
    it cannot rebuild; the child must not use (or close) the parent's connections.
    """
