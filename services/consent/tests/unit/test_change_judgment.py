"""How consent judges a deployment change from what it knows, as plain code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from tenantflow.consent.changes import (
    Doubt,
    Freshness,
    Refusal,
    doubts,
    refusal_after_check,
    refusal_of,
)
from tenantflow.consent.models import LinkedTenant
from tenantflow.consent.verification import Rejected, Verified
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.events import LinkAuthorization, VerificationFailure

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FRESH = Freshness(consent_max_age=timedelta(minutes=30), actor_max_age=timedelta(minutes=15))
ADA = UserActor(tenant_id=uuid4(), object_id=uuid4())


def tenant(**fields: object) -> LinkedTenant:
    values: dict[str, object] = {
        "tenant_id": ADA.tenant_id,
        "link_change_id": uuid4(),
        "connector_consented": True,
        "intune_writing": True,
        "next_check_at": NOW,
        "verified_at": NOW - timedelta(minutes=1),
    }
    return LinkedTenant.model_validate({**values, **fields})


def allowed(age: timedelta) -> datetime:
    """When the actor was last shown allowed: ``age`` ago."""
    return NOW - age


def reason(refusal: Refusal | None) -> str | None:
    return refusal.reason.value if refusal else None


def test_what_consent_knows_refuses_first() -> None:
    assert reason(refusal_of(None, ADA)) == "tenant_not_linked"
    assert reason(refusal_of(tenant(connector_consented=False), ADA)) == "consent_revoked"
    assert reason(refusal_of(tenant(intune_writing=False), ADA)) == "intune_writing_not_enabled"
    assert reason(refusal_of(tenant(), None)) == "actor_not_allowed"
    assert refusal_of(tenant(), ADA) is None


def test_nothing_in_doubt_while_both_checks_are_fresh() -> None:
    assert doubts(tenant(), allowed(timedelta(minutes=5)), NOW, FRESH) == Doubt.NONE


def test_an_unknown_or_stale_actor_is_in_doubt() -> None:
    assert doubts(tenant(), None, NOW, FRESH) == Doubt.ACTOR
    assert doubts(tenant(), allowed(timedelta(minutes=16)), NOW, FRESH) == Doubt.ACTOR


def test_consent_is_in_doubt_when_neither_a_recheck_nor_a_verification_is_recent() -> None:
    stale = tenant(verified_at=NOW - timedelta(hours=2), last_checked_at=None)
    rechecked = tenant(verified_at=NOW - timedelta(hours=2), last_checked_at=NOW)
    actor = allowed(timedelta(0))
    assert doubts(stale, actor, NOW, FRESH) == Doubt.CONSENT
    assert doubts(rechecked, actor, NOW, FRESH) == Doubt.NONE
    assert doubts(tenant(verified_at=None), None, NOW, FRESH) == Doubt.CONSENT | Doubt.ACTOR


def test_graphs_answer_for_the_actor() -> None:
    verified = Verified("Contoso", None, [], LinkAuthorization.APP_ASSIGNMENT)
    assert refusal_after_check(verified) is None
    cases = {
        VerificationFailure.USER_NOT_AUTHORIZED: "actor_not_allowed",
        VerificationFailure.ADMIN_CONSENT_MISSING: "consent_revoked",
        VerificationFailure.APP_DISABLED: "consent_revoked",
        VerificationFailure.TENANT_NOT_FOUND: "tenant_not_linked",
        VerificationFailure.APP_CREDENTIALS_INVALID: "verification_failed",
    }
    for failure, expected in cases.items():
        assert reason(refusal_after_check(Rejected(failure, "why"))) == expected, failure
