"""The task lifecycle: transitions, documents, change notifications merged into records."""

from __future__ import annotations

from app.core.lifecycle import (
    FINAL_STATES,
    NO_RECORD,
    TRANSITIONS,
    TaskDocument,
    TaskRecord,
    TaskStatus,
    allowed_sources,
)
from app.tasks.records import REQUEST_CANCEL, TRANSITION
from app.tasks.store import ResultStore


def test_every_status_has_its_sources_and_final_ones_lead_nowhere():
    assert set(TRANSITIONS) == set(TaskStatus)
    finals = {s.value for s in FINAL_STATES}
    assert finals == {"succeeded", "failed", "cancelled", "expired"}
    for sources in TRANSITIONS.values():
        assert not sources & finals
    assert NO_RECORD in TRANSITIONS[TaskStatus.PENDING]
    assert allowed_sources(TaskStatus.SUCCEEDED) == " - running "  # a cached answer: no record


def test_scripts_are_built_from_the_lifecycle():
    for status in FINAL_STATES:
        assert f"[{status.name}] = true" in TRANSITION.source
        assert f"local {status.name} = '{status.value}'" in TRANSITION.source
    # The cancel script cancels from exactly the states the table allows.
    assert TRANSITIONS[TaskStatus.CANCELLED] == {"pending", "running"}
    assert "current == PENDING" in REQUEST_CANCEL.source
    assert "current == RUNNING" in REQUEST_CANCEL.source


def raw(**fields):
    base = {
        "status": "pending",
        "model": "m",
        "owner": "u",
        "created_at": "1700000000.5",
        "attempts": "0",
        "seq": "1",
    }
    return {k.encode(): v.encode() for k, v in {**base, **fields}.items()}


def test_document_of_a_pending_task():
    record = TaskRecord.from_hash("t", raw())
    document = record.document()
    assert isinstance(document, TaskDocument)
    dumped = document.model_dump(mode="json")
    assert dumped["status"] == "pending" and dumped["result"] is None
    assert dumped["created_at"].startswith("2023-11-14T22:13:20.5")
    assert dumped["progress"] is None and dumped["webhook"] is None and dumped["deadline"] is None


def test_document_of_a_finished_task_with_progress_and_webhook():
    record = TaskRecord.from_hash(
        "t",
        {
            **raw(
                status="succeeded",
                seq="4",
                progress="1.0",
                progress_message="done",
                webhook_url="https://h/x",
                webhook_status="delivered",
                webhook_attempts="2",
                result_json='{"text": "hi"}',
            ),
            b"result": b"\x0a\x02hi",
        },
    )
    document = record.document().model_dump(mode="json")
    assert document["result"] == {"text": "hi"}
    assert document["progress"] == {"fraction": 1.0, "message": "done"}
    assert document["webhook"]["status"] == "delivered" and document["webhook"]["attempts"] == 2
    assert record.result == b"\x0a\x02hi"
    assert "result" not in record.state().model_dump()


def test_a_change_notification_merges_into_the_record():
    record = TaskRecord.from_hash("t", raw())
    event = ResultStore.parse_event(
        b'{"seq": 2, "status": "running", "started_at": "1700000001.0", "attempts": "1"}'
    )
    running = record.merged(event)
    assert running.status is TaskStatus.RUNNING and running.seq == 2 and running.attempts == 1
    assert running.model == "m"  # untouched fields stay


def test_no_record_without_status():
    assert TaskRecord.from_hash("t", {}) is None
    assert TaskRecord.from_hash("t", {b"webhook_status": b"failed"}) is None


def test_past_deadline_only_when_never_started():
    pending = TaskRecord.from_hash("t", raw(deadline="100"))
    assert pending.past_deadline(101) and not pending.past_deadline(99)
    retried = TaskRecord.from_hash("t", raw(deadline="100", attempts="1"))
    assert not retried.past_deadline(101)
