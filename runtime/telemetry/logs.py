"""Logging set-up: JSON lines in production, readable lines in `sluice dev`.

A JSON line carries the trace and span id of the span current when it was
logged, and, from a handler call, its function, workspace and job id (`job`),
so a line found in the logs leads to the job's trace and back.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar

import msgspec
from opentelemetry import trace

_encoder = msgspec.json.Encoder()

# (function, workspace, job id or "" for a batch) while a lane runs a handler call.
job: ContextVar[tuple[str, str, str] | None] = ContextVar("job", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = f"{context.trace_id:032x}"
            entry["span_id"] = f"{context.span_id:016x}"
        running = job.get()
        if running is not None:
            entry["function"], entry["workspace"] = running[0], running[1]
            if running[2]:
                entry["job_id"] = running[2]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # A line's own fields (the access log's method, path, status, ...).
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        return _encoder.encode(entry).decode()


def configure(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
