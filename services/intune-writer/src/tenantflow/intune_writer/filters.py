"""Reading each tenant's Intune assignment filters for the portal, which validates deployments
against them (a filter that does not exist is refused, never skipped).

GET /beta/deviceManagement/assignmentFilters (application permission
DeviceManagementConfiguration.Read.All, which the Intune writer app is granted with its others),
every page, every few minutes per tenant with Intune writing enabled, published whole as
AssignmentFiltersSynced. Graph I/O runs outside any transaction; a throttled or failing read is
rescheduled, never waited out in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sqlalchemy import update
from sqlmodel import col, select

from tenantflow.bus.db import transaction
from tenantflow.bus.errors import is_transient
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import ServiceActor
from tenantflow.contracts.events import AssignmentFilter, AssignmentFiltersSynced
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials
from tenantflow.graph.errors import GraphCallFailed, Throttled, TokenRefused
from tenantflow.intune_writer.models import FilterReading

log = logging.getLogger(__name__)

ACTOR = ServiceActor(service="intune-writer")
FILTERS = "/beta/deviceManagement/assignmentFilters"
CLAIM = 20


def filter_of(item: dict[str, object]) -> AssignmentFilter:
    """A filter as Graph lists it (deviceAndAppManagementAssignmentFilter)."""
    management = item.get("assignmentFilterManagementType") or "devices"
    return AssignmentFilter(
        filter_id=UUID(str(item["id"])),
        display_name=str(item.get("displayName") or ""),
        platform=str(item.get("platform") or "unknown"),
        management_type="apps" if management == "apps" else "devices",
    )


@dataclass
class FilterReader:
    runtime: ServiceRuntime
    graph: GraphClient
    credentials: AppCredentials
    interval: timedelta
    retry: timedelta
    lease: timedelta = timedelta(seconds=60)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.wake = asyncio.Event()

    async def _claim(self) -> list[UUID]:
        now = self.clock()
        due = (
            select(FilterReading.tenant_id)
            .where(col(FilterReading.next_read_at) <= now)
            .order_by(col(FilterReading.next_read_at))
            .limit(CLAIM)
            .with_for_update(skip_locked=True)
        )
        async with transaction(self.runtime.sessions) as session:
            claimed = await session.exec(
                update(FilterReading)
                .where(col(FilterReading.tenant_id).in_(due.scalar_subquery()))
                .values(next_read_at=now + self.lease)
                .returning(col(FilterReading.tenant_id))
            )
            return list(claimed.scalars())

    async def read(self, tenant_id: UUID) -> None:
        """Read the tenant's filters and publish them; reschedule it either way."""
        try:
            token = await self.graph.token(self.credentials, str(tenant_id))
            items = await self.graph.read_all(
                token,
                FILTERS,
                params={"$select": "id,displayName,platform,assignmentFilterManagementType"},
            )
        except Throttled as throttled:
            await self._later(tenant_id, timedelta(seconds=throttled.retry_after_s))
            return
        except (TokenRefused, GraphCallFailed) as exc:
            # a 401/403 was reported to consent by the client's hook; try again later
            log.warning("reading the filters of %s failed: %s", tenant_id, exc)
            await self._later(tenant_id, self.retry)
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("reading the filters of %s postponed: %r", tenant_id, exc)
            await self._later(tenant_id, self.retry)
            return
        async with transaction(self.runtime.sessions) as session:
            reading = await session.get(FilterReading, tenant_id, with_for_update=True)
            if reading is None:
                return  # Intune writing ended meanwhile: publish nothing
            now = self.clock()
            reading.last_read_at, reading.next_read_at = now, now + self.interval
            session.add(reading)
            await self.runtime.outbox.add(
                session,
                AssignmentFiltersSynced(
                    tenant_id=tenant_id,
                    actor=ACTOR,
                    correlation_id=uuid4(),
                    filters=[filter_of(item) for item in items],
                ),
            )

    async def _later(self, tenant_id: UUID, delay: timedelta) -> None:
        async with transaction(self.runtime.sessions) as session:
            await session.exec(
                update(FilterReading)
                .where(col(FilterReading.tenant_id) == tenant_id)
                .values(next_read_at=self.clock() + delay)
            )

    async def run(self, poll_seconds: float) -> None:
        """Read due tenants' filters until cancelled."""
        while True:
            self.wake.clear()
            claimed = await self._claim()
            await asyncio.gather(*(self.read(tenant_id) for tenant_id in claimed))
            if claimed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), poll_seconds)
