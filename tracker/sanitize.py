"""Text from outside, made harmless where it lands.

Token names and symbols are chosen by whoever issued the token, labels are typed by users, error
messages are written by servers. The database keeps them as they came; each sink neutralises
them its own way:

- a terminal or a log line gets no control character (an ANSI or OSC escape could rewrite the
  screen, a newline or carriage return could forge a log line): each is shown as ``\\xNN``;
- a CSV cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return) gets a leading ``'``, the OWASP rule. Only text cells: an
  amount like ``-1.5`` is a number and stays one.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides, which
# can reorder or break what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as an escape: one safe line."""
    return _CONTROL.sub(_escape, text)


def csv_cell(text: str) -> str:
    """A text cell that no spreadsheet runs as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text
