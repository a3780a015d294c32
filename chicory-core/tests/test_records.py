"""Result records: what the worker writes is what a waiting client reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from chicory.errors import ResultBackendError
from chicory.records import (
    NOT_SUCCESS,
    ErrorInfo,
    ResultRecord,
    TaskState,
    decode_record,
    encode_record,
    success_result,
)

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.mark.parametrize(
    "record",
    [
        ResultRecord(
            task_id="t1",
            task="a.add",
            state=TaskState.SUCCESS,
            attempt=1,
            updated_at=AT,
            result={"sum": [1, 2.5, None, "x"]},
        ),
        ResultRecord(
            task_id="t2",
            task="a.add",
            state=TaskState.SUCCESS,
            attempt=3,
            updated_at=AT,
            result=None,
        ),
        ResultRecord(
            task_id="t3",
            task="a.add",
            state=TaskState.FAILURE,
            attempt=2,
            updated_at=AT,
            error=ErrorInfo(type="ValueError", message="no", traceback="Traceback ..."),
        ),
        ResultRecord(task_id="t4", task="a.add", state=TaskState.STARTED, attempt=1, updated_at=AT),
    ],
    ids=["success", "success-none", "failure", "started"],
)
def test_records_round_trip(record: ResultRecord) -> None:
    assert decode_record(encode_record(record), ResultRecord) == record


def _success_raw() -> dict[str, object]:
    """A SUCCESS record as stored, parsed, to be altered by a test."""
    record = ResultRecord(task_id="t", task="a", state=TaskState.SUCCESS, attempt=1, updated_at=AT)
    raw: dict[str, object] = orjson.loads(encode_record(record))
    return raw


def test_fields_a_newer_writer_adds_are_ignored() -> None:
    raw = _success_raw()
    raw["extra"] = {"anything": 1}
    assert decode_record(orjson.dumps(raw), ResultRecord).task_id == "t"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"updated_at": "2026-01-02T03:04:05"}, "no timezone.*updated_at"),
        ({"updated_at": 5}, "updated_at"),
        ({"state": "DONE"}, "state"),
        ({"attempt": [1]}, "attempt"),
        ({"attempt": "1"}, r"expected an integer, got str @ \$\.attempt"),
        ({"task_id": None}, r"expected a string, got NoneType @ \$\.task_id"),
        ({"task": 3}, "task"),
        ({"error": "boom"}, "error"),
    ],
)
def test_malformed_records_are_one_error_naming_the_field(
    change: dict[str, object], match: str
) -> None:
    raw = _success_raw()
    raw.update(change)
    with pytest.raises(ResultBackendError, match=match):
        decode_record(orjson.dumps(raw), ResultRecord)


def test_a_record_missing_a_field_is_an_error() -> None:
    raw = _success_raw()
    del raw["task"]
    with pytest.raises(ResultBackendError, match="task"):
        decode_record(orjson.dumps(raw), ResultRecord)


SUCCESS_RESULTS: list[object] = [3, None, "x", 2.5, True, [1, {"a": None}], {"sum": [1, 2.5]}]


@pytest.mark.parametrize("result", SUCCESS_RESULTS, ids=repr)
def test_a_success_records_result_is_read_without_building_the_record(result: object) -> None:
    record = ResultRecord(
        task_id="t", task="a", state=TaskState.SUCCESS, attempt=2, updated_at=AT, result=result
    )
    assert (
        success_result(encode_record(record))
        == result
        == decode_record(encode_record(record), ResultRecord).result
    )


@pytest.mark.parametrize(
    "change",
    [
        {"updated_at": "2026-01-02T03:04:05"},
        {"updated_at": 5},
        {"state": "DONE"},
        {"state": "FAILURE", "error": {"type": "E", "message": "m", "traceback": None}},
        {"state": "CANCELLED"},
        {"state": "STARTED"},
        {"attempt": "1"},
        {"attempt": True},
        {"task_id": None},
        {"task": 3},
        {"error": "boom"},
    ],
)
def test_anything_but_a_well_formed_success_is_left_to_decode_record(
    change: dict[str, object],
) -> None:
    raw = _success_raw()
    raw.update(change)
    assert success_result(orjson.dumps(raw)) is NOT_SUCCESS


@pytest.mark.parametrize("data", [b"", b"not json", b"[1]", b"null", b'{"state": "SUCCESS"}'])
def test_bytes_that_are_no_success_record_are_left_to_decode_record(data: bytes) -> None:
    assert success_result(data) is NOT_SUCCESS
