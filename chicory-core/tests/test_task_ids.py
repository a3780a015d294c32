"""Task ids: random, unique, and never shared by a forked child with its parent."""

from __future__ import annotations

import os

from chicory.task import new_task_id, new_task_ids


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_task_id() for _ in range(5000)] + new_task_ids(5000)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_draws_ids_of_its_own() -> None:
    """Ids are drawn ahead in batches; a child must not hand out the parent's next ones."""
    new_task_id()  # the parent now holds ids drawn ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write, "".join(new_task_id() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        drawn = pipe.read()
    os.waitpid(child, 0)
    child_ids = {drawn[i : i + 32] for i in range(0, len(drawn), 32)}
    parent_ids = {new_task_id() for _ in range(10)}
    assert len(child_ids) == 10
    assert not child_ids & parent_ids
