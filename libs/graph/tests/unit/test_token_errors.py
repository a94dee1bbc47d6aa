"""What an error answer of Entra ID's token endpoint means: a verdict, or a passing failure."""

from __future__ import annotations

from typing import Any

import pytest

from tenantflow.bus.errors import TransientError, is_transient
from tenantflow.contracts.events import VerificationFailure
from tenantflow.graph.errors import REFUSALS, TokenRefused, classify_token_error

pytestmark = pytest.mark.unit


def answer(code: int | None, error: Any = "invalid_request") -> dict[str, Any]:
    result: dict[str, Any] = {
        "error": error,
        "error_description": f"AADSTS{code}: what happened.\r\nTrace ID: 1\r\nTimestamp: now",
    }
    if code is not None:
        result["error_codes"] = [code]
    return result


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (700016, VerificationFailure.ADMIN_CONSENT_MISSING),
        (7000229, VerificationFailure.ADMIN_CONSENT_MISSING),
        (90002, VerificationFailure.TENANT_NOT_FOUND),
        (7000112, VerificationFailure.APP_DISABLED),
        (70001, VerificationFailure.APP_DISABLED),
        (53003, VerificationFailure.ACCESS_BLOCKED),
        (7000215, VerificationFailure.APP_CREDENTIALS_INVALID),
        (7000222, VerificationFailure.APP_CREDENTIALS_INVALID),
        (700027, VerificationFailure.APP_CREDENTIALS_INVALID),
    ],
)
def test_documented_permanent_codes_are_verdicts(code: int, reason: VerificationFailure) -> None:
    outcome = classify_token_error(answer(code, "unauthorized_client"))
    assert isinstance(outcome, TokenRefused)
    assert outcome.reason is reason
    assert outcome.code == code
    assert outcome.description == f"AADSTS{code}: what happened."  # trace lines dropped
    assert not is_transient(outcome)


@pytest.mark.parametrize("code", [50033, 90006, 90024, 90033, 90055, 90090, 50196])
def test_service_side_and_throttling_codes_are_transient(code: int) -> None:
    outcome = classify_token_error(answer(code))
    assert isinstance(outcome, TransientError)
    assert is_transient(outcome)


@pytest.mark.parametrize("error", ["temporarily_unavailable", "server_error", {"code": "x"}])
def test_transient_oauth_errors_and_bodies_that_are_not_oauth(error: Any) -> None:
    assert isinstance(classify_token_error(answer(None, error)), TransientError)


def test_an_unknown_code_is_a_verdict_that_names_it() -> None:
    outcome = classify_token_error(answer(123456))
    assert isinstance(outcome, TokenRefused)
    assert outcome.reason is VerificationFailure.TOKEN_REFUSED
    assert "AADSTS123456" in str(outcome)


def test_every_refusal_is_a_reason_the_portal_knows() -> None:
    assert set(REFUSALS.values()) <= set(VerificationFailure)
