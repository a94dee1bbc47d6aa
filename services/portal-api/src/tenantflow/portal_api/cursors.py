"""Opaque page cursors: base64url of the last key of a page (a text key such as an app id, or
a composite key as a JSON list)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from tenantflow.portal_api.problems import Problem


def encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode(cursor: str, pattern: str) -> str:
    """The key ``cursor`` carries; 400 unless this API could have made it (strict base64url
    of a key matching ``pattern``)."""
    try:
        key = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        text = key.decode()
    except (ValueError, binascii.Error):
        text = ""
    if not re.fullmatch(pattern, text):
        raise Problem(400, "The cursor is not one this API returned.")
    return text


def pack(*parts: str) -> str:
    """A cursor over a composite key (``parts`` in the page's sort order)."""
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unpack(cursor: str, *types: Callable[[str], Any]) -> tuple[Any, ...]:
    """The key ``pack`` put in ``cursor``, each part converted by its type; 400 unless this
    API could have made it."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(parts, list) or len(parts) != len(types):
            raise ValueError(cursor)
        return tuple(kind(str(part)) for kind, part in zip(types, parts, strict=True))
    except (ValueError, TypeError, binascii.Error):
        raise Problem(400, "The cursor is not one this API returned.") from None
