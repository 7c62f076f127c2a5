"""The one log format (myqueue/core/logs.py): text and JSON lines, checked as a reader parses them."""

import io
import json
import logging
import re

import pytest

from myqueue.core import logs

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO myqueue\.test: hello 7$")


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(log_format, **kwargs) -> str:
    out = io.StringIO()
    logs.configure_logging("broker0", "INFO", log_format, out, **kwargs)
    logging.getLogger("myqueue.test").info("hello %d", 7, extra={"status": 200})
    return out.getvalue()


def test_text_is_one_utc_iso_line(restore_root):
    line = emit("text")
    assert TEXT_LINE.match(line.rstrip("\n")), line
    prefixed = emit("text", text_prefix="[supervisor] ")
    assert prefixed.startswith("[supervisor] ") and TEXT_LINE.match(
        prefixed.rstrip("\n")[len("[supervisor] ") :]
    )


def test_json_names_the_process_and_keeps_extra_fields(restore_root):
    record = json.loads(emit("json"))
    assert record["process"] == "broker0" and record["level"] == "INFO" and record["logger"] == "myqueue.test"
    assert record["message"] == "hello 7" and record["status"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record["time"]


def test_json_keeps_a_traceback_on_one_line(restore_root):
    out = io.StringIO()
    logs.configure_logging("primary", "INFO", "json", out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "failed" and "ValueError: boom" in record["exc_info"]


def test_a_line_printed_outside_logging_becomes_a_record():
    record = json.loads(logs.json_line("broker1", "Traceback (most recent call last):"))
    assert (
        record["process"] == "broker1"
        and record["message"].startswith("Traceback")
        and record["logger"] == "output"
    )


def test_an_unknown_format_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(logs.LOG_FORMAT_ENV, "xml")
    with pytest.raises(ValueError, match="MYQUEUE_LOG_FORMAT must be one of text, json"):
        logs.log_format_from_env()


def test_the_operator_prefixes_lines_about_an_object_once():
    from myqueue_operator.__main__ import object_prefix  # installed with the package (pyproject: where)

    record = logging.LogRecord("kopf.objects", logging.INFO, "", 0, "reconciled", None, None)
    record.k8s_ref = {"kind": "Topic", "namespace": "ns", "name": "t1"}
    assert object_prefix(record) and object_prefix(record)
    assert record.getMessage() == "[ns/t1] reconciled"
    plain = logging.LogRecord("kopf", logging.INFO, "", 0, "started", None, None)
    assert object_prefix(plain) and plain.getMessage() == "started"
