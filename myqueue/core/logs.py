"""One log format for every myqueue process: ``text`` (the default) or ``json``, one line a record.

Every process — supervisor, managers, brokers, the CLI's long commands — configures logging here,
so a cluster's merged output reads the same everywhere (``--log-format`` or ``MYQUEUE_LOG_FORMAT``):

- text: ``2026-12-02T10:15:04.127Z INFO myqueue.broker: broker broker0 (memory store)``; the local
  supervisor prefixes each child's lines with ``[name] `` (and its own with ``[supervisor] ``);
- json: ``{"time": "2026-12-02T10:15:04.127Z", "level": "INFO", "logger": "myqueue.broker",
  "process": "broker0", "message": "…", …}`` plus a record's ``extra`` fields (the access log's
  ``method``, ``path``, ``status``, ``duration_ms``, ``client``) and ``exc_info`` for a traceback.
  The process name is in each record, so the supervisor passes children's JSON lines through as
  they are.

JSON lines come from python-json-logger (a well-kept formatter on the standard ``logging``
package), so records keep every ``logging`` feature (levels, ``extra``, exceptions).
"""

import argparse
import logging
import os
import sys
import time
from typing import Literal, TextIO, cast

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_FORMAT_ENV = "MYQUEUE_LOG_FORMAT"
ACCESS_LOG_ENV = "MYQUEUE_ACCESS_LOG"  # "1": every HTTP request is logged by logger ACCESS_LOGGER
ACCESS_LOGGER = "myqueue.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


def log_format_from_env(default: LogFormat = "text") -> LogFormat:
    """``MYQUEUE_LOG_FORMAT``, checked: a value other than text/json is a clear error."""
    value = os.environ.get(LOG_FORMAT_ENV, "").strip().lower() or default
    if value not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV} must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return cast(LogFormat, value)


def access_log_from_env() -> bool:
    return os.environ.get(ACCESS_LOG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _utc_iso(formatter: logging.Formatter) -> logging.Formatter:
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter


def formatter(log_format: LogFormat, process: str, text_prefix: str = "") -> logging.Formatter:
    if log_format == "json":
        return _utc_iso(
            JsonFormatter(_JSON_FIELDS, rename_fields=_JSON_NAMES, static_fields={"process": process})
        )
    return _utc_iso(logging.Formatter(text_prefix.replace("%", "%%") + TEXT_FORMAT))


def json_line(process: str, message: str, level: str = "INFO", logger: str = "output") -> str:
    """A line a process printed outside logging (a traceback before logging started), as a JSON
    record of the same shape, so a JSON log stays one object a line."""
    record = logging.LogRecord(logger, getattr(logging, level), "", 0, message, None, None)
    return formatter("json", process).format(record)


def configure_logging(
    process: str,
    level: str = "INFO",
    log_format: LogFormat | None = None,
    stream: TextIO | None = None,
    *,
    text_prefix: str = "",
) -> None:
    """Replace the root logger's handlers with one stderr handler in the chosen format.
    ``text_prefix``: put before each text line (the supervisor's ``[supervisor] ``, as it prefixes
    its children's lines)."""
    chosen = log_format or log_format_from_env()
    if chosen not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {chosen!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(chosen, process, text_prefix))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def add_logging_arguments(parser: argparse.ArgumentParser, *, access_log: bool = True) -> None:
    """``--log-level``, ``--log-format`` and (for services) ``--access-log``, defaulting to the environment."""
    parser.add_argument("--log-level", default=os.environ.get("MYQUEUE_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help=f"text or json (default: ${LOG_FORMAT_ENV} or text)",
    )
    if access_log:
        parser.add_argument(
            "--access-log",
            action="store_true",
            default=None,
            help=f"log every request (default: ${ACCESS_LOG_ENV})",
        )
