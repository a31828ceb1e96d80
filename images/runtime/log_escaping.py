"""Log records that no logged value can forge: control characters escaped, one record a line.

`EscapeControlCharacters` (a handler filter) renders each record's message and escapes its
control characters (`\\n` → `\\\\n`, other C0/C1 characters, DEL and the Unicode line
separators as `\\\\xNN`/`\\\\uNNNN`), and does the same to the string fields passed as `extra`
(`path`, `user`, ...), for text and JSON logs alike. `OneLineFormatter` (text logs) indents the
lines of a traceback under their record, so a line that starts at the left margin is always
the start of a record. `GunicornLogger` gives gunicorn's own logs the same filter.
"""

from __future__ import annotations

import logging
import re

from gunicorn import glogging

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Attributes every LogRecord has; any other attribute came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}
CONTINUATION = "\n    | "


def escape_control(text: str) -> str:
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class EscapeControlCharacters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the parts readable rather than lose them
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = escape_control(message), None
        for name, value in vars(record).items():
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, escape_control(value))
        return True


class OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).split("\n")
        return first + "".join(CONTINUATION + line for line in rest)


class GunicornLogger(glogging.Logger):
    """gunicorn's own error and access logs, with the same escaping as the service's."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
                    handler.addFilter(EscapeControlCharacters())
