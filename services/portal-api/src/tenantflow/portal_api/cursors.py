"""Opaque page cursors over a text key (an app id): base64url of the last key of a page."""

from __future__ import annotations

import base64
import binascii
import re

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
