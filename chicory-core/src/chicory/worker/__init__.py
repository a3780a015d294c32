"""The worker: state machine, ack strategies, execution and the serve loop."""

from chicory.worker.ack import STRATEGIES, AckStrategy, AtLeastOnce, AtMostOnce
from chicory.worker.states import TRANSITIONS, JobState, transition
from chicory.worker.tuning import tune_gc
from chicory.worker.worker import Worker

__all__ = [
    "STRATEGIES",
    "TRANSITIONS",
    "AckStrategy",
    "AtLeastOnce",
    "AtMostOnce",
    "JobState",
    "Worker",
    "transition",
    "tune_gc",
]
