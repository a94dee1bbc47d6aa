"""One emulator process per test session, reached over real HTTPS with its own CA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantflow.emulator.testing import RunningEmulator, running_emulator


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with running_emulator(tmp_path_factory.mktemp("emulator")) as started:
        yield started


@pytest.fixture
def no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's own `verify`, which
    is how MSAL passes the emulator's CA; a machine that sets them would hide the CA."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
