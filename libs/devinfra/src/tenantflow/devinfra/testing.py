"""Test helpers for every integration tier: what really is on a topic, and waiting on a
condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import make_url

from tenantflow.bus.clients import connection_kwargs
from tenantflow.bus.reader import PartitionReader
from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.infra import LocalInfra
from tenantflow.emulator.testing import RunningEmulator, start_emulator


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], within: float = 20.0, what: str = ""
) -> None:
    """Wait until ``condition`` holds; fail the test at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what or condition}")
        await asyncio.sleep(0.02)


async def publish(
    settings: KafkaSettings, *events: EventPayload, source: str = "/tenantflow/test"
) -> list[str]:
    """Put ``events`` on their topics, in order, as another service's relay would; their ids."""
    producer = AIOKafkaProducer(**connection_kwargs(settings, "test-publisher"))
    await producer.start()
    ids = []
    try:
        for event in events:
            envelope = Envelope(data=event, source=source)
            await producer.send_and_wait(
                settings.topic_prefix + envelope.topic,
                envelope.value(),
                key=envelope.key,
                headers=envelope.headers(),
            )
            ids.append(envelope.id)
    finally:
        await producer.stop()
    return ids


async def read_topic(
    settings: KafkaSettings, topic: Topic, count: int, within: float = 20.0
) -> list[ConsumerRecord[Any, Any]]:
    """Every record of ``topic`` from the beginning: at least ``count``, and at least all that
    were on every partition when the call began; read as auditors read (``PartitionReader``: no
    group, no offsets committed)."""
    reader = PartitionReader(settings, [topic], client_id="test-reader")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    records: list[ConsumerRecord[Any, Any]] = []

    async def enough() -> bool:
        nonlocal records
        with contextlib.suppress(TimeoutError):  # a read is bounded by what is left
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                records = [r async for batch in reader.batches() for r in batch]
        return len(records) >= count

    name = settings.topic_prefix + topic
    await eventually(enough, within=within, what=f"{name}: {count} records")
    return records


async def create_database(database_url: str, prefix: str = "t") -> str:
    """A new, empty database on the server of ``database_url``; its URL. For tests whose
    services must not share tables with the rest of the session's."""
    url = make_url(database_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return url.set(database=name).render_as_string(hide_password=False)


@contextmanager
def infra_and_emulator(workdir: Path) -> Iterator[tuple[LocalInfra, RunningEmulator]]:
    """Local Kafka and PostgreSQL (fsync on, as in production) and an emulator on a free port,
    in ``workdir``, stopped when the block ends: what a benchmark measures against."""
    infra = LocalInfra(workdir=workdir / "infra", durable=True, bound_to_parent=True)
    infra.start()
    try:
        process, emulator = start_emulator(workdir / "emulator", "--port", "0")
        try:
            yield infra, emulator
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        infra.stop()


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """Median, p95, p99 and max of ``seconds``, in milliseconds (nearest-rank percentiles)."""
    ordered = sorted(seconds)

    def percentile(share: float) -> float:
        return round(
            ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))] * 1000, 1
        )

    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


# --- a machine with nothing but Python (tests/e2e/test_bare_machine.py, bench/cold_setup.py)

HIDDEN = ("uv", "uvx", "java", "javac", "jshell", "mvn", "mvnDebug")


def bare_path(directory: Path) -> str:
    """A PATH holding this machine's programs except uv, Java and Maven, and a python3."""
    directory.mkdir()
    for source in ("/usr/local/bin", "/usr/bin", "/bin"):
        for program in sorted(Path(source).glob("*")) if Path(source).is_dir() else []:
            link = directory / program.name
            if program.name in HIDDEN or link.exists() or program.name.startswith("python"):
                continue
            link.symlink_to(program)
    # the interpreter the test environment was made from (not its venv, and not pyenv's
    # shims, which would bring uv back)
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (directory / "python3").symlink_to(python)
    return str(directory)


def copy_of_repository(target: Path, root: Path) -> Path:
    """The tracked files of the repository at ``root``, copied to ``target``."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source = root / name.decode()
        if source.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


def bare_environment(path: str, workdir: Path) -> dict[str, str]:
    """The machine's own environment (proxies, CA bundles) without what points into this
    checkout, its virtual environment or its infrastructure; ``path`` as PATH (``bare_path``),
    and a Kafka cache and infrastructure directory of its own in ``workdir``."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "UV", "DATABASE_URL", "PYTHONPATH")
        and not name.startswith(("UV_", "TENANTFLOW_", "KAFKA_", "PYTEST_", "JAVA"))
    }
    return environment | {
        "PATH": path,
        "TENANTFLOW_CACHE_DIR": str(workdir / "cache"),
        "TENANTFLOW_INFRA_DIR": str(workdir / "infra"),
    }
