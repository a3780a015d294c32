"""Worker processes: ``chicory worker --processes N``, recycling and ``--reload``.

:class:`~chicory.processes.supervisor.Supervisor` starts N child processes with the
``spawn`` start method (nothing is inherited but the command line's settings: each child
imports the app itself), each a full :class:`~chicory.worker.Worker` with its own broker
consumer and worker id (:mod:`chicory.processes.child`). See ``docs/guide.md`` (Worker
processes) for what the supervisor does when a child dies, is recycled or the sources change.
With ``--scheduler``, the supervisor runs the app's one scheduler itself
(:mod:`chicory.processes.scheduling`).
"""

from chicory.processes.child import ChildConfig
from chicory.processes.supervisor import Supervisor

__all__ = ["ChildConfig", "Supervisor"]
