"""The worker's logs: JSON lines or plain text on standard error, for every logger.

A record about one execution carries ``execution_id`` and ``workflow`` (the engine passes
them as ``extra=``); a record logged by user code inside a step body gets the step's
``execution_id`` and ``step_id`` from ``durably.current_step()``, so a step's own log
lines can be found by execution without any change to the step.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from .runtime._primitive import current_step

LogFormat = Literal["json", "text"]

#: What a record may carry about an execution, in the order lines show it.
CONTEXT_FIELDS = ("execution_id", "workflow", "step_id")


class StepContext(logging.Filter):
    """Adds the running step's ids to a record logged inside a step body."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "execution_id", None) is None:
            step = current_step()
            if step is not None:
                record.execution_id = step.execution_id
                record.step_id = step.step_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, the execution's fields when the record has them, ``exception`` (the
    formatted traceback) when it carries one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE [execution_id=... workflow=...]``, local time with
    its offset."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created).astimezone()
        fields = " ".join(
            f"{field}={value}"
            for field in CONTEXT_FIELDS
            if (value := getattr(record, field, None)) is not None
        )
        text = (
            f"{at.isoformat(timespec='milliseconds')} {record.levelname:<7} "
            f"{record.name}: {record.getMessage()}"
        )
        if fields:
            text += f" [{fields}]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(log_format: LogFormat, level: str) -> logging.Handler:
    """Send every logger's records at ``level`` and above to standard error, formatted.

    The root logger gets the one handler (any handler it had is removed), so that the
    workflows' own loggers come out in the same format.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(StepContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python's warnings too, as records of "py.warnings"
    return handler
