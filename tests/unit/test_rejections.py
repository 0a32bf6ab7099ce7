"""What a rejected task message still tells (read leniently, trusted for nothing but
telling its app), what a refused callback names, and how a timeout after refusals
reads."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from baton import cli
from baton.contracts import TaskMessage, derive_idempotency_key
from baton.refusals import attempt_named, timeout_message
from baton.rejections import Readable, readable_fields, rejected_notification_id
from baton.runtime import has_runtime
from hypothesis import given, settings
from hypothesis import strategies as st

GOOD = {"app": "contracts", "algorithm": "ocr", "input": {"document": "d"}}


@pytest.mark.parametrize(
    ("body", "readable"),
    [
        (
            json.dumps({**GOOD, "idempotency_key": "k-1", "colour": "red"}),
            ("contracts", "ocr", "k-1"),
        ),
        (json.dumps({**GOOD, "algorithm": "no spaces"}), ("contracts", None, None)),
        (json.dumps({**GOOD, "app": 17, "idempotency_key": "k"}), (None, "ocr", "k")),
        (json.dumps({**GOOD, "idempotency_key": "has space"}), ("contracts", "ocr", None)),
        ('{"app": "contracts", "app": "billing", "algorithm": "ocr"}', (None, "ocr", None)),
        ('{"app": "contracts", "input": {"a": 1, "a": 2}}', ("contracts", None, None)),
        ("[1, 2]", (None, None, None)),
        ("not json", (None, None, None)),
        ("[" * 100_000, (None, None, None)),
        (b"\xff\xfe", (None, None, None)),
    ],
)
def test_each_field_is_read_only_where_it_is_there_once_and_well_formed(
    body: str | bytes, readable: tuple[str | None, str | None, str | None]
) -> None:
    assert readable_fields(body) == Readable(*readable)


def test_a_message_that_parsed_without_a_key_gets_the_one_baton_would_derive() -> None:
    body = json.dumps({**GOOD, "algorithm": "unregistered"})
    expected = derive_idempotency_key(TaskMessage.model_validate_json(body))
    assert readable_fields(body) == Readable("contracts", "unregistered", expected)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_body_is_read_without_an_error(body: str | bytes) -> None:
    assert isinstance(readable_fields(body), Readable)


def test_the_notification_id_is_the_message_s_for_every_delivery() -> None:
    assert rejected_notification_id("m-1") == rejected_notification_id("m-1")
    assert rejected_notification_id("m-1") != rejected_notification_id("m-2")


@pytest.mark.parametrize(
    ("raw", "attempt"),
    [
        (b'{"attempt": 2, "status": "succeeded"}', 2),
        (b'{"attempt": true}', None),
        (b'{"attempt": "2"}', None),
        (b'{"attempt": 0}', None),
        (b'{"attempt": 1001}', None),
        (b'{"attempt": 2.0}', None),
        (b"[2]", None),
        (b"\xff", None),
        (b"", None),
    ],
)
def test_a_refused_callback_names_an_attempt_only_as_an_integer_in_range(
    raw: bytes, attempt: int | None
) -> None:
    assert attempt_named(raw) == attempt


def test_a_timeout_says_why_callbacks_were_refused() -> None:
    deadline = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).isoformat()
    quiet = SimpleNamespace(refused_callbacks=0, last_refusal=None)
    refused = SimpleNamespace(refused_callbacks=3, last_refusal="result_missing")
    assert timeout_message(None, deadline) == f"no callback by the deadline {deadline}"
    assert timeout_message(quiet, deadline) == f"no callback by the deadline {deadline}"  # type: ignore[arg-type]
    assert timeout_message(refused, deadline) == (  # type: ignore[arg-type]
        f"no callback accepted by the deadline {deadline}: 3 refused, the last with 409 "
        "result_missing (it said succeeded, and no result object had been uploaded)"
    )


@pytest.mark.parametrize("argv", [["stats"], ["tasks", "list"], ["stats", "--json"]])
def test_the_views_name_every_missing_setting_in_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not has_runtime()
    for name in list(os.environ):
        if name.startswith("BATON_"):
            monkeypatch.delenv(name)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert line.startswith("baton: settings missing: BATON_REDIS_URL, ")
