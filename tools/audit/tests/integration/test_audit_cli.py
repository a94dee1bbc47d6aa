"""tenantflow-audit on real Kafka: a scripted history of two tenants (a link, Intune writing
enabled, changes by two users, one rejected, one never finished, an unlink) read back as a
timeline, filtered and exported; each deployment's state at moments of that history; verify
naming the unfinished change and a forged record; and no consumer group left behind."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tenantflow.audit import cli
from tenantflow.bus.clients import connection_kwargs
from tenantflow.bus.reader import partition_of
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.chain import GENESIS
from tenantflow.contracts.common import EventPayload, ServiceActor, UserActor
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import (
    CatalogApp,
    DeploymentChangeApplied,
    DeploymentChangeRejected,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    DesiredAssignment,
    IntuneWritingEnabled,
    TenantLinkRequested,
    TenantLinkVerified,
    TenantUnlinked,
)
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra

pytestmark = pytest.mark.integration

CONSENT = ServiceActor(service="consent")
WRITER = ServiceActor(service="intune-writer")


class Producers:
    """Publishes events as the services' outboxes and relays do: each linked into its
    producer's chain for its tenant (the source names the producer: portal-api for what users
    ask, the acting service otherwise)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.heads: dict[tuple[str, UUID], tuple[int, str]] = {}

    def link(self, event: EventPayload) -> Envelope[EventPayload]:
        actor = event.actor
        source = "/tenantflow/" + (
            actor.service if isinstance(actor, ServiceActor) else "portal-api"
        )
        seq, head = self.heads.get((source, event.tenant_id), (0, GENESIS))
        envelope = Envelope(data=event, source=source).chained(head, seq + 1)
        assert envelope.chain is not None
        self.heads[(source, event.tenant_id)] = (seq + 1, envelope.chain.hash)
        return envelope

    async def publish(self, *events: EventPayload) -> None:
        await send(self.kafka, [self.link(event) for event in events])


async def send(
    kafka: KafkaSettings,
    envelopes: Sequence[Envelope[EventPayload]],
    value: Callable[[Envelope[EventPayload]], bytes] = lambda e: e.value(),
) -> list[int]:
    """Put ``envelopes`` on their topics in order (``value``: the bytes sent); the offsets."""
    producer = AIOKafkaProducer(**connection_kwargs(kafka, "test-producer"))
    await producer.start()
    try:
        sent = []
        for envelope in envelopes:
            metadata = await producer.send_and_wait(
                kafka.topic_prefix + envelope.topic,
                value(envelope),
                key=envelope.key,
                headers=envelope.headers(),
            )
            sent.append(metadata.offset)
        return sent
    finally:
        await producer.stop()


def group(group_id: UUID, intent: str = "required") -> DesiredAssignment:
    return DesiredAssignment.model_validate(
        {"target": {"kind": "group", "group_id": str(group_id)}, "intent": intent}
    )


@dataclass
class History:
    """What the script did, to compare the replay with."""

    tenant: UUID
    other: UUID
    alice: UUID
    bob: UUID
    changes: dict[str, UUID]
    marks: dict[str, datetime]
    groups: dict[str, UUID]


async def change(
    kafka: Producers,
    tenant: UUID,
    user: UserActor,
    app: str,
    revision: int,
    desired: Sequence[DesiredAssignment],
    outcome: str | None,
) -> UUID:
    """A change as portal-api, consent and the writer record it: requested, then verified
    and applied, or rejected, or verified and never finished (``outcome`` None)."""
    change_id = uuid4()
    common = {"tenant_id": tenant, "correlation_id": change_id, "app": app, "revision": revision}
    events: list[EventPayload] = [
        DeploymentChangeRequested(
            **common,
            actor=user,
            catalog_app=CatalogApp.model_validate(
                {
                    "catalog_id": app,
                    "display_name": app,
                    "publisher": "Test",
                    "package_identifier": f"Test.{app}",
                    "run_as_account": "system",
                }
            ),
            replaces_revision=revision - 1,
            operation="replace",
            desired_assignments=list(desired),
        )
    ]
    if outcome == "rejected":
        events.append(
            DeploymentChangeRejected(
                **common,
                actor=CONSENT,
                reason="actor_not_allowed",
                detail="not an administrator of this tenant",
            )
        )
    else:
        events.append(DeploymentChangeVerified(**common, actor=CONSENT))
    if outcome == "applied":
        events.append(
            DeploymentChangeApplied(
                **common,
                actor=WRITER,
                intune_app_id=uuid4(),
                assignments_before=[],
                written_assignments=list(desired),
                unchanged=False,
                graph_request_ids=[str(uuid4())],
                applied_at=datetime.now(UTC),
            )
        )
    await kafka.publish(*events)
    return change_id


@pytest.fixture
async def history(infra: RunningInfra) -> tuple[KafkaSettings, History]:
    settings = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"a{uuid4().hex[:10]}."
    )
    await ensure_topics(settings)
    kafka = Producers(settings)
    tenant, other, alice_id, bob_id = uuid4(), uuid4(), uuid4(), uuid4()
    alice = UserActor(tenant_id=tenant, object_id=alice_id, display_name="Alice Admin")
    bob = UserActor(tenant_id=tenant, object_id=bob_id, display_name="Bob Builder")
    link = uuid4()
    await kafka.publish(
        TenantLinkRequested(tenant_id=tenant, actor=alice, correlation_id=link),
        TenantLinkVerified(
            tenant_id=tenant,
            actor=CONSENT,
            correlation_id=link,
            display_name="Contoso",
            default_domain="contoso.example",
            granted_permissions=["Directory.Read.All"],
            authorized_by="global_administrator",
        ),
        IntuneWritingEnabled(
            tenant_id=tenant,
            actor=CONSENT,
            correlation_id=uuid4(),
            granted_permissions=["DeviceManagementApps.ReadWrite.All"],
        ),
    )
    groups = {"sales": uuid4(), "it": uuid4(), "all": uuid4()}
    changes, marks = {}, {}
    changes["first"] = await change(
        kafka, tenant, alice, "7zip", 1, [group(groups["sales"])], "applied"
    )
    marks["after_first"] = datetime.now(UTC)
    await asyncio.sleep(0.01)  # distinct event times around the marks (not a synchronisation)
    changes["refused"] = await change(
        kafka, tenant, bob, "7zip", 2, [group(groups["sales"], "available")], "rejected"
    )
    changes["vlc"] = await change(kafka, tenant, bob, "vlc", 1, [group(groups["it"])], "applied")
    changes["elsewhere"] = await change(
        kafka,
        other,
        UserActor(tenant_id=other, object_id=uuid4()),
        "7zip",
        1,
        [group(groups["all"])],
        "applied",
    )
    marks["after_vlc"] = datetime.now(UTC)
    await asyncio.sleep(0.01)
    changes["unfinished"] = await change(
        kafka, tenant, alice, "7zip", 2, [group(groups["it"])], None
    )
    await kafka.publish(TenantUnlinked(tenant_id=tenant, actor=alice, correlation_id=uuid4()))
    marks["after_unlink"] = datetime.now(UTC)
    return settings, History(tenant, other, alice_id, bob_id, changes, marks, groups)


async def audit(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[int, str]:
    """The command as a user runs it, with the services' KAFKA_* settings."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", kafka.topic_prefix)
    out, err = io.StringIO(), io.StringIO()
    status = await cli.run(cli.parser().parse_args(list(argv)), out, err)
    return status, out.getvalue()


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line]


async def test_the_timeline_lists_what_was_done_by_whom_in_order(
    history: tuple[KafkaSettings, History], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka, h = history
    status, text = await audit(
        kafka, monkeypatch, "timeline", "--tenant", str(h.tenant), "--format", "jsonl"
    )
    assert status == 0
    rows = jsonl(text)
    assert [(r["event_type"], r["actor_name"] or r["actor"]) for r in rows] == [
        ("tenant.link.requested", "Alice Admin"),
        ("tenant.link.verified", "service consent"),
        ("tenant.intune_writing.enabled", "service consent"),
        ("deployment.change.requested", "Alice Admin"),
        ("deployment.change.verified", "service consent"),
        ("deployment.change.applied", "service intune-writer"),
        ("deployment.change.requested", "Bob Builder"),
        ("deployment.change.rejected", "service consent"),
        ("deployment.change.requested", "Bob Builder"),
        ("deployment.change.verified", "service consent"),
        ("deployment.change.applied", "service intune-writer"),
        ("deployment.change.requested", "Alice Admin"),
        ("deployment.change.verified", "service consent"),
        ("tenant.unlinked", "Alice Admin"),
    ]
    assert {r["tenant_id"] for r in rows} == {str(h.tenant)}
    refused = [r for r in rows if r["event_type"] == "deployment.change.rejected"]
    assert refused[0]["change_id"] == str(h.changes["refused"])
    assert "actor_not_allowed" in str(refused[0]["summary"])
    times = [str(r["time"]) for r in rows]
    assert times == sorted(times)

    # every tenant: the other tenant's change is there too
    _, everything = await audit(kafka, monkeypatch, "timeline", "--format", "jsonl")
    assert {r["tenant_id"] for r in jsonl(everything)} == {str(h.tenant), str(h.other)}


async def test_the_timeline_filters_by_actor_app_change_and_time_and_exports_csv(
    history: tuple[KafkaSettings, History], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka, h = history
    _, bobs = await audit(kafka, monkeypatch, "timeline", "--actor", "bob", "--format", "jsonl")
    # what Bob asked for, with what became of it
    assert {r["change_id"] for r in jsonl(bobs)} == {
        str(h.changes["refused"]),
        str(h.changes["vlc"]),
    }
    assert len(jsonl(bobs)) == 5
    _, by_id = await audit(
        kafka, monkeypatch, "timeline", "--actor", str(h.alice), "--format", "jsonl"
    )
    assert str(h.changes["first"]) in {r["change_id"] for r in jsonl(by_id)}
    assert str(h.changes["vlc"]) not in {r["change_id"] for r in jsonl(by_id)}

    _, vlc = await audit(
        kafka,
        monkeypatch,
        "timeline",
        "--tenant",
        str(h.tenant),
        "--app",
        "vlc",
        "--format",
        "jsonl",
    )
    assert [r["event_type"] for r in jsonl(vlc)] == [
        "deployment.change.requested",
        "deployment.change.verified",
        "deployment.change.applied",
    ]
    _, one = await audit(
        kafka, monkeypatch, "timeline", "--change", str(h.changes["refused"]), "--format", "jsonl"
    )
    assert {r["change_id"] for r in jsonl(one)} == {str(h.changes["refused"])}

    since = h.marks["after_vlc"].isoformat()
    _, late = await audit(
        kafka,
        monkeypatch,
        "timeline",
        "--tenant",
        str(h.tenant),
        "--since",
        since,
        "--format",
        "jsonl",
    )
    assert [r["event_type"] for r in jsonl(late)] == [
        "deployment.change.requested",
        "deployment.change.verified",
        "tenant.unlinked",
    ]

    _, table = await audit(
        kafka, monkeypatch, "timeline", "--tenant", str(h.tenant), "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 14
    assert rows[3]["actor_name"] == "Alice Admin"
    assert rows[3]["event_type"] == "deployment.change.requested"

    _, readable = await audit(kafka, monkeypatch, "timeline", "--tenant", str(h.tenant))
    assert "14 events" in readable
    assert "Bob Builder" in readable


async def test_state_at_a_moment_is_what_was_desired_and_applied_then(
    history: tuple[KafkaSettings, History], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka, h = history

    async def state(at: datetime) -> dict[str, dict[str, object]]:
        status, text = await audit(
            kafka,
            monkeypatch,
            "state",
            "--tenant",
            str(h.tenant),
            "--at",
            at.isoformat(),
            "--format",
            "json",
        )
        assert status == 0
        return {d["app"]: d for d in json.loads(text)["deployments"]}

    first = await state(h.marks["after_first"])
    assert set(first) == {"7zip"}
    sales = [
        {"target": {"kind": "group", "group_id": str(h.groups["sales"])}, "intent": "required"}
    ]
    assert _targets(first["7zip"]["desired"]) == _targets(sales)
    assert _targets(first["7zip"]["applied"]) == _targets(sales)
    assert first["7zip"]["in_sync"] is True

    later = await state(h.marks["after_vlc"])
    assert set(later) == {"7zip", "vlc"}
    assert later["7zip"]["applied_revision"] == 1  # Bob's change to it was rejected
    assert later["7zip"]["desired_revision"] == 1
    assert _targets(later["vlc"]["applied"]) == [("group", str(h.groups["it"]), "required")]

    unlinked = await state(h.marks["after_unlink"])
    assert unlinked == {}


def _targets(assignments: object) -> list[tuple[str, str, str]]:
    assert isinstance(assignments, list)
    return sorted(
        (a["target"]["kind"], str(a["target"].get("group_id")), a["intent"]) for a in assignments
    )


async def test_verify_names_the_change_that_never_ended_and_a_forged_record(
    history: tuple[KafkaSettings, History], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka, h = history
    admin = AIOKafkaAdminClient(**connection_kwargs(kafka, "test-admin"))
    await admin.start()
    try:
        groups_before = {g[0] for g in await admin.list_consumer_groups()}
        status, text = await audit(kafka, monkeypatch, "verify")
        assert status == 1
        assert f"change {h.changes['unfinished']}" in text
        assert "last verified" in text
        assert "0 breaks; 5 changes requested, 4 reached an end, 1 did not; 0 undecodable" in text
        # per tenant one chain each for portal-api, consent and the writer
        assert "17 records in 6 audit chains" in text

        status, text = await audit(kafka, monkeypatch, "verify", "--tenant", str(h.other))
        assert status == 0, text
        assert text.strip().endswith(
            "0 breaks; 1 changes requested, 1 reached an end, 0 did not; 0 undecodable records"
        )

        producer = AIOKafkaProducer(**connection_kwargs(kafka, "forger"))
        await producer.start()
        try:
            forged = await producer.send_and_wait(
                kafka.topic_prefix + Topic.DEPLOYMENTS,
                b'{"tenant_id": "not a tenant"}',
                key=str(h.other).encode(),
                headers=[("ce_type", b"dev.tenantflow.deployment.change.applied")],
            )
        finally:
            await producer.stop()
        status, text = await audit(kafka, monkeypatch, "verify", "--tenant", str(h.other))
        assert status == 1
        assert text.strip().endswith("1 undecodable records")
        groups_after = {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()
    assert groups_after == groups_before  # the tool joined no group and committed nothing
    assert forged.offset >= 0


def applied(tenant: UUID) -> DeploymentChangeApplied:
    return DeploymentChangeApplied(
        tenant_id=tenant,
        actor=WRITER,
        correlation_id=uuid4(),
        app="7zip",
        revision=1,
        intune_app_id=uuid4(),
        assignments_before=[],
        written_assignments=[],
        unchanged=False,
        graph_request_ids=[str(uuid4())],
        applied_at=datetime.now(UTC),
    )


async def test_verify_names_every_altered_missing_reordered_or_forked_event(
    infra: RunningInfra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forged records produced straight to the topic, one kind per tenant: each is named by
    kind, topic, partition and offset."""
    settings = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"f{uuid4().hex[:10]}."
    )
    await ensure_topics(settings)
    chains = Producers(settings)
    expected: list[tuple[str, UUID, int]] = []

    altered = uuid4()
    original = chains.link(applied(altered))
    await send(settings, [original])
    [offset] = await send(
        settings,
        [original],
        value=lambda e: e.value().replace(b'"unchanged":false', b'"unchanged":true'),
    )
    expected.append(("altered", altered, offset))

    forked = uuid4()
    await chains.publish(applied(forked))
    impostor = Envelope(data=applied(forked), source="/tenantflow/intune-writer").chained(
        GENESIS, 1
    )
    [offset] = await send(settings, [impostor])
    expected.append(("forked", forked, offset))

    gap = uuid4()
    first, _dropped, third = (chains.link(applied(gap)) for _ in range(3))
    _, offset = await send(settings, [first, third])
    expected.append(("gap", gap, offset))

    moved = uuid4()
    one, two, three = (chains.link(applied(moved)) for _ in range(3))
    _, _, offset = await send(settings, [one, three, two])
    expected.append(("reordered", moved, offset))

    status, text = await audit(settings, monkeypatch, "verify")
    assert status == 1
    for kind, tenant, at in expected:
        partition = partition_of(Topic.DEPLOYMENTS, tenant)
        assert f"chain broken ({kind}) at {Topic.DEPLOYMENTS}/{partition}@{at}:" in text, kind
    assert ", 4 breaks;" in text
