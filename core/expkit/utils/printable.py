"""Text from files shown on a terminal: control characters escaped, never sent raw.

A job's results.json or overrides.yaml is data anyone could have written: an ESC sequence in an
error message would recolour, move the cursor or retitle the terminal, a `\\r` would hide the start
of a line, a bidi override (U+202E) would show text in another order than it is.
"""

from __future__ import annotations

import unicodedata
from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control or format character (C0, DEL, C1, bidi controls) escaped."""
    if text.isprintable():
        return text
    return "".join(
        _escaped(c) if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text
    )


def printable_value(value: Any) -> Any:
    """`printable` for strings, and for the strings inside lists; other values as they are."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_value(v) for v in value]
    return value
