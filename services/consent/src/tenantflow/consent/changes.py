"""Verifying deployment changes: the tenant is linked, Intune writing is enabled, consent is still
in place, and the actor is still allowed.

What consent knows is kept current by its own checks (link and activation verification, the
scheduled re-check every ``recheck_interval_seconds``, re-checks on reported 401/403s) and by
what it learnt of each user. A change is judged from that alone, with no Graph call, unless
something is in doubt: the tenant's last check is older than ``consent_max_age_seconds``, or
the actor was not shown allowed within ``actor_max_age_seconds``. Then the change waits in
``pending_changes`` and ``ChangeChecks`` asks Graph, outside any consumer transaction, before
judging it; later changes of the tenant wait behind it, so verdicts keep the requests' order.

"Allowed" is the rule for linking: an active Global Administrator of the tenant, or a user
assigned to the directory connector there (directly or through a group). The portal checked
the user's portal role when it accepted the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Flag, auto
from uuid import UUID

from sqlalchemy import delete, exists, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus import tracing
from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.db import transaction
from tenantflow.bus.errors import is_transient
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.consent.models import AuthorizedActor, LinkedTenant, PendingChange
from tenantflow.consent.verification import REVOKING, Rejected, Verified
from tenantflow.contracts.common import Actor, EventPayload, UserActor
from tenantflow.contracts.events import (
    DeploymentChangeRejected,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    DeploymentRejectionReason,
    LinkAuthorization,
    VerificationFailure,
)

log = logging.getLogger(__name__)

CLAIM_TENANTS = 10
BACKOFF_MAX_S = 60.0


class Doubt(Flag):
    NONE = 0
    CONSENT = auto()
    """The tenant's consent was not checked recently enough to be trusted."""
    ACTOR = auto()
    """The actor was not shown allowed recently enough."""


@dataclass(frozen=True)
class Freshness:
    consent_max_age: timedelta
    actor_max_age: timedelta


@dataclass(frozen=True)
class Refusal:
    reason: DeploymentRejectionReason
    detail: str


BY_A_SERVICE = Refusal(
    DeploymentRejectionReason.ACTOR_NOT_ALLOWED,
    "Deployment changes are made by signed-in users, not by services.",
)


def refusal_of(tenant: LinkedTenant | None, actor: UserActor | None) -> Refusal | None:
    """Why what consent knows of the tenant refuses the change; None when it does not."""
    if tenant is None:
        return Refusal(
            DeploymentRejectionReason.TENANT_NOT_LINKED, "The tenant is not linked (any more)."
        )
    if not tenant.connector_consented:
        return Refusal(
            DeploymentRejectionReason.CONSENT_REVOKED,
            "The directory connector's consent was revoked in the tenant; a Global "
            "Administrator has to consent again and the tenant be linked again.",
        )
    if not tenant.intune_writing:
        return Refusal(
            DeploymentRejectionReason.INTUNE_WRITING_NOT_ENABLED,
            "Intune writing is not enabled for the tenant, or its consent was revoked; an "
            "Admin activates it again.",
        )
    if actor is None:
        return BY_A_SERVICE
    return None


def doubts(
    tenant: LinkedTenant, actor_seen_at: datetime | None, now: datetime, freshness: Freshness
) -> Doubt:
    """What is too old to trust without asking Graph again: the tenant's consent, or the
    actor's right, last shown allowed at ``actor_seen_at`` (None: never)."""
    doubt = Doubt.NONE
    seen = tenant.consent_seen_at
    if seen is None or now - seen > freshness.consent_max_age:
        doubt |= Doubt.CONSENT
    if actor_seen_at is None or now - actor_seen_at > freshness.actor_max_age:
        doubt |= Doubt.ACTOR
    return doubt


def refusal_after_check(checked: Verified | Rejected) -> Refusal | None:
    """What Graph's answer for the actor means for the change."""
    if isinstance(checked, Verified):
        return None
    if checked.reason is VerificationFailure.USER_NOT_AUTHORIZED:
        return Refusal(DeploymentRejectionReason.ACTOR_NOT_ALLOWED, checked.detail)
    if checked.reason in REVOKING:
        return Refusal(DeploymentRejectionReason.CONSENT_REVOKED, checked.detail)
    if checked.reason is VerificationFailure.TENANT_NOT_FOUND:
        return Refusal(DeploymentRejectionReason.TENANT_NOT_LINKED, checked.detail)
    return Refusal(DeploymentRejectionReason.VERIFICATION_FAILED, checked.detail)


def _verdict(
    change: PendingChange | DeploymentChangeRequested,
    actor: Actor,
    causation_id: str,
    refusal: Refusal | None,
) -> EventPayload:
    if isinstance(change, PendingChange):
        tenant_id, correlation_id = change.tenant_id, change.change_id
    else:
        tenant_id, correlation_id = change.tenant_id, change.correlation_id
    same = {
        "tenant_id": tenant_id,
        "actor": actor,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "app": change.app,
        "revision": change.revision,
    }
    if refusal is None:
        return DeploymentChangeVerified(**same)
    return DeploymentChangeRejected(**same, reason=refusal.reason, detail=refusal.detail)


async def record_allowed(
    session: AsyncSession,
    tenant_id: UUID,
    user: UUID,
    authorized_by: LinkAuthorization | None,
    now: datetime,
) -> None:
    """What a check of ``user`` found: allowed (``authorized_by``), or not (None)."""
    if authorized_by is None:
        await session.exec(
            delete(AuthorizedActor).where(
                col(AuthorizedActor.tenant_id) == tenant_id, col(AuthorizedActor.object_id) == user
            )
        )
        return
    values = {"authorized_by": authorized_by.value, "checked_at": now}
    await session.exec(
        insert(AuthorizedActor)
        .values(tenant_id=tenant_id, object_id=user, **values)
        .on_conflict_do_update(index_elements=["tenant_id", "object_id"], set_=values)
    )


VerifyUser = Callable[[UUID, UUID], Awaitable[Verified | Rejected]]
"""Graph's answer for (tenant, user): the directory connector's consent and the user's right."""
Recheck = Callable[[LinkedTenant], Awaitable[None]]
"""Re-check a tenant's consent with Graph and record what is gone (emits ConsentRevoked)."""


@dataclass
class ChangeChecks:
    """Judges deployment changes: at once when nothing is in doubt, else after a Graph check."""

    runtime: ServiceRuntime
    freshness: Freshness
    verify_user: VerifyUser
    recheck: Recheck
    clock: Callable[[], datetime]
    lease: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()

    async def on_requested(self, event: DeploymentChangeRequested, ctx: HandlerContext) -> None:
        """Emit the verdict now, or queue the change for a check."""
        session, now = ctx.session, self.clock()
        actor = event.actor if isinstance(event.actor, UserActor) else None
        if actor is None:  # refused whatever else, so it waits for nothing
            await ctx.emit(_verdict(event, event.actor, ctx.event_id, BY_A_SERVICE))
            return
        # one round trip: the tenant, when the actor was last shown allowed, whether changes wait
        user = actor.object_id
        known = (
            await session.exec(
                select(
                    LinkedTenant,
                    select(AuthorizedActor.checked_at)
                    .where(
                        AuthorizedActor.tenant_id == event.tenant_id,
                        AuthorizedActor.object_id == user,
                    )
                    .scalar_subquery(),
                    exists().where(col(PendingChange.tenant_id) == event.tenant_id),
                ).where(LinkedTenant.tenant_id == event.tenant_id)
            )
        ).first()
        if known is None:
            tenant, actor_seen_at = None, None
            waiting = (
                await session.exec(
                    select(PendingChange.change_id).where(
                        PendingChange.tenant_id == event.tenant_id
                    )
                )
            ).first() is not None
        else:
            tenant, actor_seen_at, waiting = known
        refusal = refusal_of(tenant, actor)
        if not waiting and refusal is not None:
            await ctx.emit(_verdict(event, actor, ctx.event_id, refusal))
            return
        if (
            not waiting
            and tenant
            and doubts(tenant, actor_seen_at, now, self.freshness) == Doubt.NONE
        ):
            await ctx.emit(_verdict(event, actor, ctx.event_id, None))
            return
        traceparent, tracestate = tracing.current()  # the request's handling
        await session.exec(
            insert(PendingChange)
            .values(
                change_id=event.correlation_id,
                tenant_id=event.tenant_id,
                request_event_id=ctx.event_id,
                actor_tenant_id=actor.tenant_id,
                actor_object_id=actor.object_id,
                actor_display_name=actor.display_name,
                app=event.app,
                revision=event.revision,
                queued_at=now,
                next_attempt_at=now,
                traceparent=traceparent,
                tracestate=tracestate,
            )
            .on_conflict_do_nothing()
        )
        ctx.after_commit(self._wake.set)

    # --- the checks --------------------------------------------------------------------------

    async def _claim(self) -> list[PendingChange]:
        """The waiting changes of up to CLAIM_TENANTS tenants, oldest first, leased so that
        another replica leaves them alone meanwhile."""
        now = self.clock()
        due = (
            select(PendingChange.tenant_id)
            .where(col(PendingChange.next_attempt_at) <= now)
            .order_by(col(PendingChange.seq))
            .limit(CLAIM_TENANTS)
            .with_for_update(skip_locked=True)
        )
        async with transaction(self.runtime.sessions) as session:
            claimed = await session.exec(
                update(PendingChange)
                .where(
                    col(PendingChange.tenant_id).in_(due.scalar_subquery()),
                    col(PendingChange.next_attempt_at) <= now,
                )
                .values(next_attempt_at=now + self.lease, attempts=col(PendingChange.attempts) + 1)
                .returning(PendingChange)
            )
            return sorted(claimed.scalars(), key=lambda change: change.seq or 0)

    async def check_due(self) -> int:
        """Check and judge the due waiting changes; how many got their verdict."""
        claimed = await self._claim()
        by_tenant: dict[UUID, list[PendingChange]] = {}
        for change in claimed:
            by_tenant.setdefault(change.tenant_id, []).append(change)
        judged = 0
        for tenant_id, changes in by_tenant.items():
            try:
                judged += await self._check_tenant(tenant_id, changes)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("change checks of %s postponed: %r", tenant_id, exc)
                await self._postpone(changes)
        return judged

    async def _check_tenant(self, tenant_id: UUID, changes: list[PendingChange]) -> int:
        """Ask Graph what is in doubt (no transaction open meanwhile), then judge every
        waiting change of the tenant, in order, in one transaction."""
        async with self.runtime.sessions() as session:
            tenant = await session.get(LinkedTenant, tenant_id)
            known = {}
            for change in changes:
                allowed = await session.get(AuthorizedActor, (tenant_id, change.actor_object_id))
                known[change.actor_object_id] = allowed.checked_at if allowed else None
        now = self.clock()
        checked: dict[UUID, Verified | Rejected] = {}
        if tenant is not None:
            live = [c for c in changes if refusal_of(tenant, _user(c)) is None]
            if live and doubts(tenant, None, now, self.freshness) & Doubt.CONSENT:
                await self.recheck(tenant)  # Graph; records what is gone itself
            for change in live:
                user = change.actor_object_id
                if user not in checked and doubts(tenant, known[user], now, self.freshness) & (
                    Doubt.ACTOR
                ):
                    checked[user] = await self.verify_user(tenant_id, user)  # Graph
        async with transaction(self.runtime.sessions) as session:
            tenant = await session.get(LinkedTenant, tenant_id, populate_existing=True)
            now = self.clock()
            for user, result in checked.items():
                authorized = result.authorized_by if isinstance(result, Verified) else None
                await record_allowed(session, tenant_id, user, authorized, now)
            for change in changes:
                user_result = checked.get(change.actor_object_id)
                refusal = refusal_of(tenant, _user(change)) or (
                    refusal_after_check(user_result) if user_result else None
                )
                verdict = self.runtime.outbox.envelope(
                    _verdict(change, _user(change), change.request_event_id, refusal),
                    traceparent=change.traceparent,
                    tracestate=change.tracestate,
                )
                await self.runtime.outbox.add(session, verdict)
                await session.exec(
                    delete(PendingChange).where(col(PendingChange.change_id) == change.change_id)
                )
        return len(changes)

    async def _postpone(self, changes: list[PendingChange]) -> None:
        attempts = max(change.attempts for change in changes)
        delay = timedelta(seconds=min(BACKOFF_MAX_S, 0.5 * 2 ** min(attempts, 10)))
        async with transaction(self.runtime.sessions) as session:
            await session.exec(
                update(PendingChange)
                .where(col(PendingChange.change_id).in_([c.change_id for c in changes]))
                .values(next_attempt_at=self.clock() + delay)
            )

    async def run(self, poll_seconds: float) -> None:
        """Check waiting changes as they arrive (woken by the handler) or every
        ``poll_seconds`` (another replica's, a postponed one), until cancelled."""
        while True:
            self._wake.clear()
            if await self.check_due():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_seconds)


def _user(change: PendingChange) -> UserActor:
    return UserActor(
        tenant_id=change.actor_tenant_id,
        object_id=change.actor_object_id,
        display_name=change.actor_display_name,
    )
