"""No log written during the test run holds a secret, a bearer token or a client assertion.

Runs last (tests/security comes after the other tiers): it reads every log file the run wrote
under pytest's temporary directory — each service process's log, `make run`'s, the emulator's —
and looks for what must never be logged: JWTs (access tokens, client assertions), Authorization
headers, client secrets (the emulator's demo secrets by value, and any ``client_secret=`` form
field) and PEM private keys.
"""

from __future__ import annotations

import re

import pytest

from tenantflow.emulator.settings import EmulatorSettings

pytestmark = pytest.mark.e2e

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
PATTERNS = {
    "a JWT (token or client assertion)": JWT,
    "an Authorization header": re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"),
    "a client_secret field": re.compile(r"(?i)client_secret=[^&\s]+"),
    "a client_assertion field": re.compile(r"(?i)client_assertion=[^&\s]+"),
    "a private key": re.compile(r"-----BEGIN (RSA |EC )?PRIVATE KEY-----"),
}


def demo_secrets() -> list[str]:
    settings = EmulatorSettings()
    return [
        secret.get_secret_value()
        for secret in (
            settings.directory_connector_secret,
            settings.intune_writer_secret,
            settings.portal_api_secret,
        )
    ]


def findings(text: str) -> list[str]:
    found = [name for name, pattern in PATTERNS.items() if pattern.search(text)]
    found += [f"the demo secret {secret[:6]}…" for secret in demo_secrets() if secret in text]
    return found


def test_the_scan_finds_what_it_looks_for() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
    assert findings(f"GET /v1/tenants Authorization: Bearer {token}") == [
        "a JWT (token or client assertion)",
        "an Authorization header",
    ]
    assert findings(f"body grant_type=client_credentials&client_secret={demo_secrets()[1]}")
    assert findings("client_assertion_type=…&client_assertion=eyJ0eXAi.eyJhdWQi.c2ln")
    assert not findings("INFO tenantflow.bus.runtime consent started")


def test_no_log_of_this_run_holds_a_secret(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.getbasetemp()
    logs = [
        path
        for path in root.rglob("*.log")
        # Kafka's segment files are named .log too: they hold the events, not a log
        if path.is_file() and "data" not in path.relative_to(root).parts
    ]
    leaks = {
        str(path.relative_to(root)): found
        for path in logs
        if (found := findings(path.read_text(errors="replace")))
    }
    assert not leaks, leaks
