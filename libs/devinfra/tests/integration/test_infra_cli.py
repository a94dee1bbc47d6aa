"""`make infra-up` leaves a real broker and PostgreSQL answering; `make infra-down` leaves no
process behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tenantflow.contracts.topics import TOPIC_CONFIGS
from tenantflow.devinfra.testing import eventually

pytestmark = pytest.mark.integration


def cli(command: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TENANTFLOW_INFRA_DIR": str(workdir)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "tenantflow.devinfra.cli", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


async def test_infra_up_answers_and_infra_down_leaves_nothing(tmp_path: Path) -> None:
    up = await asyncio.to_thread(cli, "up", tmp_path)
    printed = dict(line.split("=", 1) for line in up.stdout.splitlines())
    kafka_pid = int((tmp_path / "kafka" / "broker.pid").read_text())
    postgres_pid = int((tmp_path / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=printed["KAFKA_BOOTSTRAP_SERVERS"])
        await admin.start()
        try:
            topics = set(await admin.list_topics())
        finally:
            await admin.close()
        assert {config.name for config in TOPIC_CONFIGS.values()} <= topics

        url = printed["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(url)
        try:
            assert await connection.fetchval("SELECT current_database()") == "tenantflow"
        finally:
            await connection.close()
        state = json.loads((tmp_path / "infra.json").read_text())
        assert state["env"] == printed
    finally:
        await asyncio.to_thread(cli, "down", tmp_path)

    assert not alive(kafka_pid)
    assert not alive(postgres_pid)
    assert not (tmp_path / "infra.json").exists()


_STARTS_THEN_WAITS = """
import sys, time
from pathlib import Path
from tenantflow.devinfra.infra import LocalInfra
infra = LocalInfra(workdir=Path(sys.argv[1]), durable=False, bound_to_parent=True, env={})
infra.start()
print(infra.kafka.pid_file.read_text(), flush=True)
sys.stdin.read()  # until the test kills this process
"""


async def test_a_killed_test_run_leaves_no_broker_or_database(tmp_path: Path) -> None:
    owner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STARTS_THEN_WAITS,
        str(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert owner.stdout is not None
    kafka_pid = int(await asyncio.wait_for(owner.stdout.readline(), 120))
    pid_file = tmp_path / "postgres" / "pgdata" / "postmaster.pid"
    postgres_pid = int(pid_file.read_text().split()[0])
    assert alive(kafka_pid)
    assert alive(postgres_pid)

    owner.kill()  # SIGKILL: no finaliser runs
    await owner.wait()

    async def both_gone() -> bool:
        return not alive(kafka_pid) and not alive(postgres_pid)

    await eventually(both_gone, within=60, what="broker and database stopped with their owner")
