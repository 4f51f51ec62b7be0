"""JSON from untrusted bytes (request bodies, task files, bundle manifests): every way the parser can refuse them is
one ValueError with a readable message, so each caller turns it into its own one-line error."""

from __future__ import annotations

import json
from typing import Any, Union

MAX_DIGITS = 4300  # CPython's own limit on int() of a string (3.8.14+): the same figure on every Python


def loads(data: Union[bytes, str]) -> Any:
    """``data`` as JSON (bytes in UTF-8, -16 or -32, as json.loads detects them). Refused with a ValueError: bad
    syntax, bad encoding, nesting deeper than the parser recurses, an integer literal past :data:`MAX_DIGITS`. Bytes
    are decoded strictly: json.loads would let a surrogate encoded in them pass, which no text can hold."""
    try:
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data))
        return json.loads(text, parse_int=_integer)
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, _integer's refusal
        raise ValueError(f"invalid JSON: {error}") from None


def _integer(literal: str) -> int:
    """An integer literal, refused before conversion past MAX_DIGITS: int() of a string is quadratic in its length,
    and a Python without the limit would spend minutes on one 4 MiB literal."""
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_DIGITS:
        raise ValueError(f"an integer literal of {digits} digits (at most {MAX_DIGITS})")
    return int(literal)
