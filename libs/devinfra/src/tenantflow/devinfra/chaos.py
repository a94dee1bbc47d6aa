"""`make chaos`: tenantflow keeps every change through crashes, restarts, Graph storms and poison.

One run has its own PostgreSQL (fsync on), Kafka broker and emulator, and runs the four services
under the supervisor `make run` uses (a process that dies is started again, with its backoff).
Tenants are seeded, linked and given Intune writing through the portal API, as their
administrators would. Then changes are requested at a steady pace (random desired sets over a
few catalog apps per tenant, several per deployment, so some coalesce), while the plan's faults
are injected, each at its point of the run:

- SIGKILL of the writer (twice), consent, directory-sync and portal-api: the supervisor restarts
  them;
- SIGKILL of the Kafka broker and of PostgreSQL (the server and its backends), each started
  again after a pause;
- a storm of 429s on the writer's Graph calls (some of them writes Intune applied before it
  answered 429), and a storm of 5xx on every Graph call;
- poison records on the tenants and deployments topics.

At the end, within a deadline, it checks:

- every change the portal recorded is in a terminal state, and each deployment's last change
  was applied;
- the portal holds what the client last had accepted, and Intune (the emulator's state) holds
  exactly each deployment's desired set, in one app per catalog app (no duplicate);
- every outbox row was published and every event on a topic came from an outbox; every consumer
  group committed to the end of every partition it reads (count in equals count out);
- the dead-letter topic holds one letter per poison record and consumer group of its topic, and
  nothing else.

It prints a table of the faults and what followed, and one of the checks; ``--json`` writes the
report. The exit status is non-zero if a check failed.

    uv run python -m tenantflow.devinfra.chaos [--tenants 50] [--changes 1000] [--seconds 150]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

from tenantflow.bus.clients import connection_kwargs, producer_kwargs
from tenantflow.bus.reader import PartitionReader
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.envelope import EnvelopeError, decode, header_map
from tenantflow.contracts.events import DeadLettered
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.kafka import KafkaBroker
from tenantflow.devinfra.postgres import PostgresServer
from tenantflow.devinfra.processes import free_port
from tenantflow.devinfra.run import Supervised
from tenantflow.devinfra.services import SERVICES, emulated_microsoft
from tenantflow.devinfra.testing import eventually
from tenantflow.emulator.testing import RunningEmulator, start_emulator

ADMIN_ROLE = "Tenantflow.Admin"
WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]
SCHEMAS = ("portal_api", "consent", "directory_sync", "intune_writer")
TERMINAL = {"applied", "failed", "rejected", "superseded"}
RETRIED = {502, 503, 504}
"""Answers a client retries (the portal or its database is restarting); a 500 is retried too,
but counted: the portal should never answer one."""
TARGET_TYPES = {
    "group": "#microsoft.graph.groupAssignmentTarget",
    "exclusion_group": "#microsoft.graph.exclusionGroupAssignmentTarget",
}
GRAPH_PATHS = r"^/(v1\.0|beta)/"
MARKER = re.compile(r"tenantflow:[0-9a-fA-F-]{36}/([a-z0-9][a-z0-9.-]*)")
"""The marker the writer leaves in an app's notes: which catalog app it is."""
WRITER_PATHS = r"deviceAppManagement|\$batch"


@dataclass(frozen=True)
class Plan:
    tenants: int = 50
    changes: int = 1000
    seconds: float = 150.0
    """How long the changes are requested over; the faults fall within it."""
    apps: int = 4
    """Catalog apps each tenant deploys."""
    groups: int = 4
    outage_s: float = 4.0
    """How long the broker and the database stay down."""
    storm_share: float = 0.3
    storm_s: float = 0.12
    """A storm's length, as a share of ``seconds``."""
    poison: int = 4
    settle_s: float = 300.0
    """After the last change was requested: the deadline for every change to end."""
    seed: int = 7


class ChaosFailed(Exception):
    pass


@dataclass
class Injected:
    fault: str
    at_s: float
    outcome: str = "under way"
    fired: int | None = None
    """A storm's faults that fired."""


@dataclass
class Deployment:
    tenant: TenantSetup
    app: str
    etag: str | None = None
    desired: list[dict[str, Any]] | None = None
    """What the portal last accepted from this client."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class TenantSetup:
    id: UUID
    admin: UUID
    groups: list[UUID]
    token: str = ""


@dataclass
class Stack:
    workdir: Path
    postgres: PostgresServer
    kafka: KafkaBroker
    emulator: RunningEmulator
    services: dict[str, Supervised]
    urls: dict[str, str]

    @property
    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap_servers)

    @property
    def database_dsn(self) -> str:
        return self.postgres.url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.asynccontextmanager
async def stack(workdir: Path) -> AsyncIterator[Stack]:
    """PostgreSQL, a broker and an emulator of this run's own (so they can be killed), and the
    services supervised as under `make run`, each logging to ``workdir/<service>.log``."""
    postgres = PostgresServer(workdir / "postgres", durable=True, bound_to_parent=True)
    kafka = KafkaBroker(workdir / "kafka", bound_to_parent=True)
    await asyncio.gather(asyncio.to_thread(postgres.start), asyncio.to_thread(kafka.start))
    emulator_process = None
    supervision = None
    services: dict[str, Supervised] = {}
    try:
        await ensure_topics(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers))
        emulator_process, emulator = await asyncio.to_thread(
            start_emulator, workdir / "emulator", "--port", "0"
        )
        microsoft = emulated_microsoft(emulator)
        shared = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "DATABASE_URL": postgres.url,
        }
        settings = {
            "portal-api": {
                **microsoft["portal-api"],
                "USER_REQUESTS_PER_MINUTE": "1000000",
                "TENANT_REQUESTS_PER_MINUTE": "1000000",
            },
            "consent": microsoft["consent"],
            "directory-sync": {**microsoft["directory-sync"], "POLL_SECONDS": "0.5"},
            "intune-writer": {**microsoft["intune-writer"], "POLL_SECONDS": "0.5"},
        }
        urls = {}
        for name, service in SERVICES.items():
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            services[name] = Supervised(
                service,
                service.environment(shared, settings[name], port),
                log=workdir / f"{name}.log",
            )
        supervision = asyncio.create_task(_supervise(list(services.values())))
        running = Stack(workdir, postgres, kafka, emulator, services, urls)
        await asyncio.gather(*(ready(running, name) for name in services))
        yield running
    finally:
        if supervision is not None:
            supervision.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervision
        for each in services.values():
            each.stop()
        for each in services.values():
            if each.process is not None:
                try:
                    await asyncio.to_thread(each.process.wait, 30)
                except subprocess.TimeoutExpired:  # past its grace: ended outright
                    each.process.kill()
        if emulator_process is not None:
            emulator_process.terminate()
            await asyncio.to_thread(emulator_process.wait, 30)
        await asyncio.to_thread(kafka.stop)
        await asyncio.to_thread(postgres.stop)


async def _supervise(services: list[Supervised]) -> None:
    now = time.monotonic()
    for each in services:
        each.start(now)
    while True:
        await asyncio.sleep(0.2)  # the supervisor's pace, as under `make run`
        now = time.monotonic()
        for each in services:
            each.watch(now)


async def ready(stack: Stack, name: str, within: float = 120.0) -> None:
    async with httpx.AsyncClient(base_url=stack.urls[name], timeout=5) as client:

        async def answers() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(answers, within=within, what=f"{name} ready")


# --- the portal, as its users call it ---------------------------------------------------------


@dataclass
class Portal:
    """The portal API with a client's patience: a refused connection, a 502, 503 or 504 (a
    restart under way) is tried again until a deadline; a 500 too, but counted."""

    url: str
    deadline_s: float = 120.0
    errors_500: list[str] = field(default_factory=list)
    retries: int = 0

    async def call(self, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        headers = {"authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while True:
                try:
                    answer = await client.request(method, path, headers=headers, **kwargs)
                    if answer.status_code == 500:
                        self.errors_500.append(f"{method} {path}: {answer.text[:300]}")
                    elif answer.status_code not in RETRIED:
                        return answer
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    raise ChaosFailed(f"{method} {path}: no answer within {self.deadline_s} s")
                self.retries += 1
                await asyncio.sleep(0.25)  # a client's backoff between attempts


async def link_tenants(stack: Stack, portal: Portal, plan: Plan) -> list[TenantSetup]:
    """``plan.tenants`` tenants seeded, linked, with Intune writing on and their directory in
    the portal."""
    emulator = stack.emulator
    tenants = [
        TenantSetup(uuid4(), uuid4(), [uuid4() for _ in range(plan.groups)])
        for _ in range(plan.tenants)
    ]

    def seed(tenant: TenantSetup) -> None:
        domain = f"t{tenant.id.hex[:10]}.example"
        emulator.seed(
            {
                "id": str(tenant.id),
                "display_name": f"Tenant {tenant.id.hex[:6]}",
                "verified_domains": [domain],
                "users": [
                    {
                        "id": str(tenant.admin),
                        "display_name": "admin",
                        "user_principal_name": f"admin@{domain}",
                        "directory_roles": ["Global Administrator"],
                    }
                ],
                "groups": [
                    {"id": str(group), "display_name": f"Group {n}", "members": []}
                    for n, group in enumerate(tenant.groups)
                ],
                "enterprise_apps": [
                    {
                        "app_id": emulator.apps["directory-connector"]["client_id"],
                        "permissions": ["Directory.Read.All"],
                    },
                    {
                        "app_id": emulator.apps["intune-writer"]["client_id"],
                        "permissions": WRITER_PERMISSIONS,
                    },
                ],
            }
        )
        tenant.token = emulator.user_token(tenant.id, tenant.admin, ADMIN_ROLE)

    gate = asyncio.Semaphore(8)

    async def link(tenant: TenantSetup) -> None:
        async with gate:
            await asyncio.to_thread(seed, tenant)
            path = f"/v1/tenants/{tenant.id}"
            answer = await portal.call(
                tenant.token, "POST", "/v1/tenants", json={"tenant_id": str(tenant.id)}
            )
            _expect(answer, 202, 409)  # 409: an earlier attempt's answer was lost

            async def status(wanted: str, intune: bool = False) -> bool:
                body = (await portal.call(tenant.token, "GET", path)).json()
                return bool((body["intune_writing"] if intune else body)["status"] == wanted)

            await eventually(lambda: status("linked"), within=120, what=f"{tenant.id} linked")
            _expect(await portal.call(tenant.token, "POST", f"{path}/intune"), 202, 409)
            await eventually(
                lambda: status("enabled", intune=True), within=120, what="Intune writing"
            )

            async def synced() -> bool:
                answer = await portal.call(tenant.token, "GET", f"{path}/directory")
                return bool(answer.json()["status"] == "synced")

            await eventually(synced, within=120, what=f"{tenant.id}'s directory")

    await asyncio.gather(*(link(tenant) for tenant in tenants))
    return tenants


def _expect(answer: httpx.Response, *statuses: int) -> httpx.Response:
    if answer.status_code not in statuses:
        raise ChaosFailed(
            f"{answer.request.method} {answer.request.url.path} answered "
            f"{answer.status_code}: {answer.text[:500]}"
        )
    return answer


def random_desired(rng: random.Random, groups: list[UUID]) -> list[dict[str, Any]]:
    """One to three groups, each required or available, and at times a further group
    excluded."""
    chosen = rng.sample(groups, rng.randint(1, min(3, len(groups))))
    desired: list[dict[str, Any]] = [
        {
            "target": {"kind": "group", "group_id": str(group)},
            "intent": rng.choice(["required", "available"]),
        }
        for group in chosen
    ]
    others = [group for group in groups if group not in chosen]
    if others and rng.random() < 0.3:
        desired.append(
            {
                "target": {"kind": "exclusion_group", "group_id": str(rng.choice(others))},
                "intent": desired[0]["intent"],
            }
        )
    return desired


def _held_form(assignments: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Desired assignments as Intune holds them: (target type, group, intent)."""
    return {
        (TARGET_TYPES[a["target"]["kind"]], a["target"]["group_id"], a["intent"])
        for a in assignments
    }


async def request_change(portal: Portal, deployment: Deployment, desired: list[Any]) -> str:
    """PUT the desired set with the ETag this client holds; how it ended for the client. A PUT
    whose answer was lost may have landed: a 412 then reads the deployment, and if it holds
    this set, the change was accepted."""
    tenant = deployment.tenant
    path = f"/v1/tenants/{tenant.id}/deployments/{deployment.app}"
    for _ in range(5):
        precondition = {"if-match": deployment.etag} if deployment.etag else {"if-none-match": "*"}
        answer = await portal.call(
            tenant.token,
            "PUT",
            f"{path}?confirm=true",
            json={"assignments": desired},
            headers=precondition,
        )
        if answer.status_code in (200, 202):
            deployment.etag, deployment.desired = answer.headers["etag"], desired
            return "accepted" if answer.status_code == 202 else "unchanged"
        if answer.status_code not in (409, 412):
            raise ChaosFailed(f"PUT {path} answered {answer.status_code}: {answer.text[:500]}")
        current = _expect(await portal.call(tenant.token, "GET", path), 200)
        deployment.etag = current.headers["etag"]
        held = current.json()["desired_assignments"]
        if _held_form(held) == _held_form(desired):
            deployment.desired = desired
            return "accepted (answer lost)"
    raise ChaosFailed(f"PUT {path}: the ETag kept moving")


# --- faults -----------------------------------------------------------------------------------


@dataclass
class Chaos:
    stack: Stack
    plan: Plan
    started: float = field(default_factory=time.monotonic)
    injected: list[Injected] = field(default_factory=list)
    poison_keys: dict[str, str] = field(default_factory=dict)
    """Each poison record's key, and its topic."""

    def _note(self, fault: str) -> Injected:
        entry = Injected(fault, round(time.monotonic() - self.started, 1))
        self.injected.append(entry)
        return entry

    def schedule(self) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
        """Each fault at its share of the run."""
        storm = self.plan.storm_s * self.plan.seconds
        return [
            (0.03, lambda: self.storm_429(storm)),
            (0.09, lambda: self.kill_service("intune-writer")),
            (0.20, lambda: self.storm_5xx(storm)),
            (0.26, lambda: self.kill_service("consent")),
            (0.34, self.poison),
            (0.40, lambda: self.kill_service("directory-sync")),
            (0.48, lambda: self.kill_service("portal-api")),
            (0.58, self.kill_kafka),
            (0.80, self.kill_postgres),
            (0.92, lambda: self.kill_service("intune-writer")),
        ]

    async def run(self) -> None:
        async def at(share: float, fault: Callable[[], Awaitable[None]]) -> None:
            await asyncio.sleep(
                max(0.0, self.started + share * self.plan.seconds - time.monotonic())
            )
            await fault()

        await asyncio.gather(*(at(share, fault) for share, fault in self.schedule()))

    async def kill_service(self, name: str) -> None:
        supervised = self.stack.services[name]
        process = supervised.process
        entry = self._note(f"SIGKILL {name}")
        if process is None or process.poll() is not None:
            entry.outcome = "not running at that moment (being restarted)"
            return
        restarts, moment = supervised.restarts, time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        await eventually(
            lambda: supervised.restarts > restarts and supervised.process is not None,
            within=60,
            what=f"{name} restarted",
        )
        await ready(self.stack, name)
        entry.outcome = (
            f"pid {process.pid} killed; restarted by the supervisor as pid "
            f"{supervised.process.pid if supervised.process else '?'}, ready after "
            f"{time.monotonic() - moment:.1f} s"
        )

    async def kill_kafka(self) -> None:
        await self._outage(
            "SIGKILL the Kafka broker", self.stack.kafka.kill, self.stack.kafka.start, "its log"
        )

    async def kill_postgres(self) -> None:
        postgres = self.stack.postgres
        await self._outage(
            "SIGKILL PostgreSQL (server and backends)", postgres.kill, postgres.start, "its WAL"
        )

    async def _outage(
        self, fault: str, kill: Callable[[], None], start: Callable[[], None], recovered: str
    ) -> None:
        """``kill`` a server, leave it down for the plan's outage, ``start`` it again."""
        entry = self._note(fault)
        moment = time.monotonic()
        await asyncio.to_thread(kill)
        await asyncio.sleep(self.plan.outage_s)  # the outage itself
        await asyncio.to_thread(start)
        entry.outcome = (
            f"down {time.monotonic() - moment:.1f} s, then started again from {recovered}"
        )

    async def _storm(self, fault: str, rules: list[dict[str, Any]], seconds: float) -> None:
        entry = self._note(fault)
        with self.stack.emulator.client() as control:
            for rule in rules:
                _expect(control.post("/_emulator/faults", json=rule), 200, 201)
        await asyncio.sleep(seconds)  # the storm's length
        with self.stack.emulator.client() as control:
            fired = control.get("/_emulator/faults").json()
            control.delete("/_emulator/faults")
        answered = ", ".join(
            f"{rule['fired']} of {rule['matched']} {rule['path']!r}"
            + (" (write applied, item answered 429)" if rule["batch_write_429"] else "")
            for rule in fired
        )
        entry.outcome = f"{seconds:.0f} s; faults fired: {answered}"
        entry.fired = sum(rule["fired"] for rule in fired)

    async def storm_429(self, seconds: float) -> None:
        share = self.plan.storm_share
        await self._storm(
            "Graph 429 storm on the writer's calls",
            [
                {"path": WRITER_PATHS, "share": share, "status": 429, "retry_after": "2"},
                {
                    "path": "/assign$",
                    "share": share,
                    "batch_write_429": True,
                    "retry_after": "2",
                },
            ],
            seconds,
        )

    async def storm_5xx(self, seconds: float) -> None:
        share = self.plan.storm_share / 2
        await self._storm(
            "Graph 5xx storm on every Graph call",
            [
                {"path": GRAPH_PATHS, "share": share, "status": 503},
                {"path": GRAPH_PATHS, "share": share, "status": 500},
            ],
            seconds,
        )

    async def poison(self) -> None:
        """Records no consumer can decode: no CloudEvents headers at all, and a type whose
        schema version is not a number. Every consumer group of the topic dead-letters each."""
        entry = self._note("poison records")
        kinds: list[list[tuple[str, bytes]]] = [
            [],
            [
                ("ce_type", b"dev.tenantflow.deployment.change.requested"),
                ("ce_schemaversion", b"x"),
            ],
        ]
        producer = AIOKafkaProducer(**producer_kwargs(self.stack.kafka_settings, "chaos"))
        await producer.start()
        try:
            for n in range(self.plan.poison):
                topic = (Topic.TENANTS, Topic.DEPLOYMENTS)[n % 2]
                key = f"chaos-poison-{n}-{uuid4().hex[:6]}"
                await producer.send_and_wait(
                    topic.value, b"\x00 not an event", key=key.encode(), headers=kinds[n % 2]
                )
                self.poison_keys[key] = topic.value
        finally:
            await producer.stop()
        entry.outcome = (
            f"{len(self.poison_keys)} records on {Topic.TENANTS} and {Topic.DEPLOYMENTS}"
        )


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Report:
    plan: Plan
    faults: list[Injected]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)

    def check(self, name: str, ok: bool, found: Any, expected: Any = None) -> None:
        self.checks[name] = {"ok": bool(ok), "found": found, "expected": expected}

    @property
    def ok(self) -> bool:
        return all(check["ok"] for check in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.__dict__,
            "ok": self.ok,
            "seconds": self.seconds,
            "requests": dict(self.requests),
            "faults": [fault.__dict__ for fault in self.faults],
            "checks": self.checks,
        }


async def run(plan: Plan, workdir: Path) -> Report:
    began = time.monotonic()
    async with stack(workdir) as running:
        portal = Portal(running.urls["portal-api"])
        tenants = await link_tenants(running, portal, plan)
        linked = time.monotonic()
        catalog = _expect(
            await portal.call(tenants[0].token, "GET", "/v1/catalog/apps"), 200
        ).json()["items"]
        apps = [app["id"] for app in catalog[: plan.apps]]
        deployments = {
            (tenant.id, app): Deployment(tenant, app) for tenant in tenants for app in apps
        }
        rng = random.Random(plan.seed)  # noqa: S311 - a repeatable run, not a secret
        changes = [
            (deployments[(rng.choice(tenants).id, rng.choice(apps))], random_desired_for(rng))
            for _ in range(plan.changes)
        ]
        chaos = Chaos(running, plan)
        report = Report(plan, chaos.injected)

        async def requested(index: int, deployment: Deployment, pick: int) -> None:
            await asyncio.sleep(
                max(0.0, chaos.started + index * plan.seconds / plan.changes - time.monotonic())
            )  # the pace of the requests
            desired = random_desired(random.Random(pick), deployment.tenant.groups)  # noqa: S311
            async with deployment.lock:
                report.requests[await request_change(portal, deployment, desired)] += 1

        await asyncio.gather(
            chaos.run(),
            *(requested(i, deployment, pick) for i, (deployment, pick) in enumerate(changes)),
        )
        issued = time.monotonic()
        report.requests["client retries"] = portal.retries
        await settle(running, plan)
        settled = time.monotonic()
        await verify(running, chaos, deployments, portal, report)
        report.seconds = {
            "set_up_and_link": round(linked - began, 1),
            "requests_and_faults": round(issued - linked, 1),
            "until_every_change_ended": round(settled - issued, 1),
        }
        return report


def random_desired_for(rng: random.Random) -> int:
    """A seed for the change's desired set, drawn now so the run is repeatable."""
    return rng.randrange(2**32)


async def settle(stack: Stack, plan: Plan) -> None:
    """Until every change the portal recorded ended, every outbox is drained and every consumer
    group is at the end of its partitions; the run fails at ``plan.settle_s``."""
    connection = await _connect(stack)
    try:

        async def ended() -> bool:
            return bool(await connection.fetchval(OPEN_WORK, sorted(TERMINAL)) == 0)

        await eventually(ended, within=plan.settle_s, what="every change ended")
    finally:
        await connection.close()
    async with Offsets(stack.kafka_settings) as offsets:

        async def caught_up() -> bool:
            return sum((await offsets.lag()).values()) == 0

        await eventually(caught_up, within=60, what="every consumer group at the end")


OPEN_WORK = """
    SELECT (SELECT count(*) FROM portal_api.deployment_changes WHERE status <> ALL($1::text[]))
         + (SELECT count(*) FROM portal_api.outbox WHERE published_at IS NULL)
         + (SELECT count(*) FROM consent.outbox WHERE published_at IS NULL)
         + (SELECT count(*) FROM directory_sync.outbox WHERE published_at IS NULL)
         + (SELECT count(*) FROM intune_writer.outbox WHERE published_at IS NULL)"""
"""Changes not ended, and events not yet published: none once the run settled."""


async def _connect(stack: Stack) -> asyncpg.Connection:
    return await asyncpg.connect(stack.database_dsn)


class Offsets:
    """Consumer groups' committed offsets against the end of the partitions they read."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.admin = AIOKafkaAdminClient(**connection_kwargs(settings, "chaos-admin"))
        self.consumer = AIOKafkaConsumer(**connection_kwargs(settings, "chaos-offsets"))

    async def __aenter__(self) -> Offsets:
        await self.admin.start()
        await self.consumer.start()
        self.partitions = {
            topic["topic"]: [
                TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]
            ]
            for topic in await self.admin.describe_topics([topic.value for topic in Topic])
        }
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> dict[tuple[str, str], int]:
        """Each group's records not yet committed, per topic."""
        lag: dict[tuple[str, str], int] = {}
        for group, *_ in await self.admin.list_consumer_groups():
            committed = await self.admin.list_consumer_group_offsets(group)
            partitions = [
                partition
                for topic in {partition.topic for partition in committed}
                for partition in self.partitions[topic]
            ]
            ends = await self.consumer.end_offsets(partitions)
            for partition in partitions:
                at = committed.get(partition)
                done = at.offset if at is not None and at.offset >= 0 else 0
                key = (group, partition.topic)
                lag[key] = lag.get(key, 0) + ends[partition] - done
        return lag


async def verify(
    stack: Stack,
    chaos: Chaos,
    deployments: dict[tuple[UUID, str], Deployment],
    portal: Portal,
    report: Report,
) -> None:
    connection = await _connect(stack)
    try:
        statuses = dict(
            await connection.fetch(
                "SELECT status, count(*) FROM portal_api.deployment_changes GROUP BY status"
            )
        )
        report.check(
            "every change in a terminal state",
            set(statuses) <= TERMINAL,
            statuses,
            f"only {sorted(TERMINAL)}",
        )
        rows = await connection.fetch(
            "SELECT d.tenant_id, d.app, d.desired, d.intune_app_id, c.status "
            "FROM portal_api.deployments d "
            "JOIN portal_api.deployment_changes c ON c.change_id = d.latest_change_id"
        )
        outboxes = {
            schema: await connection.fetch(
                f"SELECT event_id, topic, published_at IS NOT NULL AS published "  # noqa: S608
                f"FROM {schema}.outbox"
            )
            for schema in SCHEMAS
        }
    finally:
        await connection.close()
    portal_desired = {(row["tenant_id"], row["app"]): json.loads(row["desired"]) for row in rows}
    not_applied = [
        f"{row['tenant_id']}/{row['app']}: {row['status']}"
        for row in rows
        if row["status"] != "applied"
    ]
    report.check(
        "each deployment's last change applied", not not_applied, not_applied[:5] or len(rows)
    )
    requested = {key: d.desired for key, d in deployments.items() if d.desired is not None}
    differing = [
        f"{tenant}/{app}"
        for (tenant, app), desired in requested.items()
        if _held_form(portal_desired.get((tenant, app), [])) != _held_form(desired)
    ]
    report.check(
        "the portal holds what the client last had accepted",
        not differing and len(requested) == len(portal_desired),
        differing[:5] or f"{len(portal_desired)} deployments",
        f"{len(requested)} deployments",
    )
    _verify_intune(stack, rows, portal_desired, report)
    await _verify_events(stack, chaos, outboxes, report)
    report.check("the portal never answered 500", not portal.errors_500, portal.errors_500[:3])


def _verify_intune(
    stack: Stack,
    rows: list[Any],
    portal_desired: dict[tuple[UUID, str], list[dict[str, Any]]],
    report: Report,
) -> None:
    """Intune (the emulator's state) against the portal's desired sets: one app per catalog
    app, holding exactly its deployment's assignments."""
    duplicates, wrong = [], []
    with stack.emulator.client() as control:
        for tenant in sorted({row["tenant_id"] for row in rows}):
            document = control.get(f"/_emulator/tenants/{tenant}").json()
            by_marker: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for app in document["intune_apps"]:
                found_marker = MARKER.search(app.get("notes") or "")
                if found_marker:
                    by_marker[found_marker.group(1)].append(app)
            duplicates += [f"{tenant}/{app}" for app, held in by_marker.items() if len(held) > 1]
            for (tenant_id, app), desired in portal_desired.items():
                if tenant_id != tenant:
                    continue
                held = by_marker.get(app, [])
                found = {
                    (a["target"]["@odata.type"], a["target"].get("groupId"), a["intent"])
                    for app_held in held[:1]
                    for a in app_held["assignments"]
                }
                if found != _held_form(desired):
                    wrong.append(f"{tenant}/{app}: holds {sorted(found)}")
    report.check("no duplicate app in Intune", not duplicates, duplicates[:5] or 0)
    report.check(
        "Intune holds exactly each deployment's desired set",
        not wrong,
        wrong[:5] or f"{len(portal_desired)} deployments equal",
    )


async def _verify_events(
    stack: Stack, chaos: Chaos, outboxes: dict[str, list[Any]], report: Report
) -> None:
    settings = stack.kafka_settings
    stored: dict[str, set[str]] = defaultdict(set)
    unpublished = 0
    for rows in outboxes.values():
        for row in rows:
            stored[row["topic"]].add(row["event_id"])
            unpublished += not row["published"]
    report.check("every outbox row published", unpublished == 0, unpublished, 0)
    on_topics: dict[str, set[str]] = defaultdict(set)
    letters: list[DeadLettered] = []
    strays: list[str] = []
    reader = PartitionReader(settings, list(Topic), client_id="chaos-reader")
    async for batch in reader.batches():
        for record in batch:
            key = record.key.decode(errors="replace") if record.key else ""
            if key in chaos.poison_keys:
                continue
            try:
                event_id = header_map(record.headers)["ce_id"]
            except (KeyError, EnvelopeError):
                strays.append(f"{record.topic}@{record.offset}")
                continue
            on_topics[record.topic].add(event_id)
            if record.topic == Topic.DEAD_LETTER.value:
                letter = decode(record.headers, record.value, accept=[DeadLettered]).data
                assert isinstance(letter, DeadLettered)
                letters.append(letter)
    counts = {
        topic: {"in outboxes": len(stored[topic]), "on the topic": len(on_topics[topic])}
        for topic in sorted(set(stored) | set(on_topics))
    }
    report.check(
        "count in equals count out: each topic holds exactly its outboxes' events",
        all(stored[topic] == on_topics[topic] for topic in counts) and not strays,
        counts,
    )
    async with Offsets(settings) as offsets:
        lag = await offsets.lag()
    read = {topic for _, topic in lag}
    report.check(
        "every consumer group committed to the end of its partitions",
        sum(lag.values()) == 0 and read >= {Topic.TENANTS.value, Topic.DEPLOYMENTS.value},
        {f"{group} on {topic}": behind for (group, topic), behind in sorted(lag.items())},
    )
    groups_of: dict[str, set[str]] = defaultdict(set)
    for group, topic in lag:
        groups_of[topic].add(group)
    expected = {
        (group, key) for key, topic in chaos.poison_keys.items() for group in groups_of[topic]
    }
    found = Counter((letter.consumer, letter.original_key) for letter in letters)
    report.check(
        "the dead-letter topic holds exactly the poison records, once per consumer group",
        set(found) == expected and all(n == 1 for n in found.values()),
        {
            "letters": sum(found.values()),
            "unexpected": sorted(f"{c}: {k}" for c, k in set(found) - expected)[:5],
            "missing": sorted(f"{c}: {k}" for c, k in expected - set(found))[:5],
        },
        f"{len(expected)} letters ({len(chaos.poison_keys)} records)",
    )


def print_report(report: Report, console: Console | None = None) -> None:
    console = console or Console()
    faults = Table(title="faults injected")
    for column in ("at (s)", "fault", "what followed"):
        faults.add_column(column)
    for fault in report.faults:
        faults.add_row(f"{fault.at_s:.1f}", fault.fault, fault.outcome)
    console.print(faults)
    requests = ", ".join(f"{name}: {count}" for name, count in sorted(report.requests.items()))
    console.print(f"change requests: {requests}")
    checks = Table(title="at the end")
    for column in ("check", "ok", "found"):
        checks.add_column(column)
    for name, check in report.checks.items():
        checks.add_row(
            name, "yes" if check["ok"] else "[red]NO[/red]", json.dumps(check["found"])[:300]
        )
    console.print(checks)
    console.print(f"times: {report.seconds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=Plan.tenants)
    parser.add_argument("--changes", type=int, default=Plan.changes)
    parser.add_argument("--seconds", type=float, default=Plan.seconds)
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs)")
    arguments = parser.parse_args()
    plan = Plan(
        tenants=arguments.tenants,
        changes=arguments.changes,
        seconds=arguments.seconds,
        seed=arguments.seed,
    )
    workdir = Path(tempfile.mkdtemp(prefix="tenantflow-chaos-"))
    print(f"chaos run in {workdir}: {plan.tenants} tenants, {plan.changes} changes")
    try:
        report = asyncio.run(run(plan, workdir))
    except (ChaosFailed, AssertionError) as exc:
        print(f"make chaos failed: {exc}\nlogs: {workdir}", file=sys.stderr)
        raise SystemExit(1) from exc
    print_report(report)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")
    if not report.ok:
        print(f"make chaos: a check failed; logs: {workdir}", file=sys.stderr)
        raise SystemExit(1)
    print("make chaos: every check passed")
    if not arguments.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
