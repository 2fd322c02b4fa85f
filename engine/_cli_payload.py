"""The command line's JSON arguments: given inline, as ``@FILE`` or as ``-`` (stdin).

An argument is bounded by the kernel (``Argument list too long`` past about 128 KiB for
one argument), a payload only by ``max_payload_bytes``; so every JSON argument may also
come from a file or from standard input. Neither ``@`` nor a lone ``-`` can start JSON
text, so the three forms never clash.

The text is checked here, before any store is opened, as the engine would check it:
strict JSON (no ``NaN``, no ``Infinity``), storable (integers within 64 bits, nesting
within the codec's limit) and within the default ``max_payload_bytes``, which is the
limit of the client the command opens.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .core import _codec
from .core._errors import PayloadError
from .runtime._ports import Settings

#: The limit the command's client applies (``Client``'s default ``max_payload_bytes``).
LIMIT = Settings().max_payload_bytes
#: Text read at most: JSON written with indentation is larger than what is stored, but
#: not by this much; past it a file is refused unread.
_READ_LIMIT = 8 * LIMIT


class JsonPayload(click.ParamType[Any]):
    """JSON text, ``@FILE`` or ``-``; converts to the value, refused with exit code 2."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default already converted
        what = _label(param)
        text = self._text(value, what, param, ctx)
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:  # JSONDecodeError, a NaN, a number of 4,300 digits
            self.fail(f"{what} is not valid JSON: {exc}", param, ctx)
        except RecursionError:
            self.fail(f"{what} is nested too deep to read", param, ctx)
        try:
            shaped = _codec.check(data, Any, what)
            size = len(_codec.dump(shaped, what))
        except PayloadError as exc:
            self.fail(str(exc), param, ctx)
        if size > LIMIT:
            self.fail(
                f"{what} is {size} bytes encoded, over max_payload_bytes ({LIMIT}); nothing "
                "was sent. Keep large data outside the log (a file, an object store) and "
                "pass a reference to it.",
                param,
                ctx,
            )
        return shaped

    def _text(
        self, value: str, what: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> bytes | str:
        data: bytes
        if value == "-":
            data = sys.stdin.buffer.read(_READ_LIMIT + 1)
            source = "standard input"
        elif value.startswith("@"):
            path = value[1:]
            try:
                if os.path.getsize(path) > _READ_LIMIT:
                    self.fail(_too_long(what, path), param, ctx)
                with open(path, "rb") as file:
                    data = file.read(_READ_LIMIT + 1)
            except OSError as exc:
                self.fail(f"cannot read {what} from {path!r}: {exc.strerror or exc}", param, ctx)
            source = repr(path)
        else:
            return value
        if len(data) > _READ_LIMIT:
            self.fail(_too_long(what, source), param, ctx)
        return data


def _label(param: click.Parameter | None) -> str:
    if param is None:
        return "the JSON"
    if isinstance(param, click.Option):
        return param.opts[-1]
    return param.human_readable_name.strip("[].") or "JSON"  # its metavar, if it has one


def _too_long(what: str, source: str) -> str:
    return (
        f"{what} in {source} is over {_READ_LIMIT} bytes of text; its encoding would be "
        f"over max_payload_bytes ({LIMIT}). Keep large data outside the log and pass a "
        "reference to it."
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON numbers are finite); pass a number or a string")
