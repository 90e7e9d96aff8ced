"""The one id grammar for swarms, tasks and blockers, as the server checks it
(``ifc_api::ids::check``): 1..=128 of ASCII letters, digits and ``-_.:@``, and
not ``.`` or ``..``. Such an id works in a path, a header and a store key, so
the client refuses anything else before sending (``InvalidArgumentError``).
"""

from __future__ import annotations

import string

from .errors import InvalidArgumentError

MAX_ID_BYTES = 128
"""Longest id, in bytes."""

ID_PUNCTUATION = "-_.:@"
"""The characters an id may use besides ASCII letters and digits."""

_ALLOWED = frozenset(string.ascii_letters + string.digits + ID_PUNCTUATION)


def check_id(field: str, value: object) -> str:
    """Returns ``value`` if it is an id; raises ``InvalidArgumentError`` (before
    anything is sent) saying why not."""
    if not isinstance(value, str):
        reason = f"must be a string, not {type(value).__name__}"
    elif not value:
        reason = "must not be empty"
    elif len(value.encode("utf-8")) > MAX_ID_BYTES:
        reason = f"is {len(value.encode('utf-8'))} bytes, more than {MAX_ID_BYTES}"
    elif value in (".", ".."):
        reason = "must not be `.` or `..`"
    else:
        bad = next((c for c in value if c not in _ALLOWED), None)
        if bad is None:
            return value
        reason = f"contains {bad!r}: an id uses ASCII letters, digits and {ID_PUNCTUATION}"
    raise InvalidArgumentError(f"{field} {value!r} {reason}")
