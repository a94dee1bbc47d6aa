"""Kafka and PostgreSQL together: what `make infra-up`, `make run` and the test fixtures use.

An external Kafka (KAFKA_BOOTSTRAP_SERVERS) or database (DATABASE_URL) is used as it is and
never started or stopped here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.devinfra.kafka import KafkaBroker
from tenantflow.devinfra.postgres import PostgresServer

STATE_FILE = "infra.json"


@dataclass
class Timings:
    kafka_start_s: float | None = None
    postgres_start_s: float | None = None


@dataclass
class LocalInfra:
    """Local infrastructure rooted at ``workdir``."""

    workdir: Path
    durable: bool = True
    bound_to_parent: bool = False
    """The servers stop with this process even if it dies without cleaning up (tests, bench)."""
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    kafka: KafkaBroker | None = None
    postgres: PostgresServer | None = None
    timings: Timings = field(default_factory=Timings)
    kafka_port: int = 0
    postgres_port: int = 0

    @property
    def bootstrap_servers(self) -> str:
        external = self.env.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            return external
        assert self.kafka is not None, "Kafka is not started"
        return self.kafka.bootstrap_servers

    @property
    def database_url(self) -> str:
        external = self.env.get("DATABASE_URL")
        if external:
            return external
        assert self.postgres is not None, "PostgreSQL is not started"
        return self.postgres.url

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if not self.env.get("DATABASE_URL"):
                began = time.monotonic()
                self.postgres = PostgresServer(
                    self.workdir / "postgres",
                    port=self.postgres_port,
                    durable=self.durable,
                    bound_to_parent=self.bound_to_parent,
                )
                self.postgres.start()
                self.timings.postgres_start_s = time.monotonic() - began
            if not self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
                began = time.monotonic()
                self.kafka = KafkaBroker(
                    self.workdir / "kafka",
                    port=self.kafka_port,
                    bound_to_parent=self.bound_to_parent,
                )
                self.kafka.start()
                self.timings.kafka_start_s = time.monotonic() - began
            asyncio.run(self.create_topics())
        except BaseException:
            self.stop()
            raise
        self._write_state()

    async def create_topics(self) -> list[str]:
        settings = KafkaSettings(bootstrap_servers=self.bootstrap_servers)
        return await ensure_topics(settings)

    def stop(self) -> None:
        if self.kafka is not None:
            self.kafka.stop()
        if self.postgres is not None:
            self.postgres.stop()
        (self.workdir / STATE_FILE).unlink(missing_ok=True)

    def environment(self) -> dict[str, str]:
        """The variables that point services at this infrastructure."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DATABASE_URL": self.database_url,
        }

    def _write_state(self) -> None:
        state = {
            "env": self.environment(),
            "kafka_workdir": str(self.kafka.workdir) if self.kafka else None,
            "kafka_port": self.kafka.port if self.kafka else None,
            "postgres_workdir": str(self.postgres.workdir) if self.postgres else None,
            "postgres_port": self.postgres.port if self.postgres else None,
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def from_state(cls, workdir: Path) -> LocalInfra | None:
        """The infrastructure a previous `infra-up` left running, if any."""
        path = workdir / STATE_FILE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        infra = cls(workdir=workdir, env={})
        if state["kafka_workdir"]:
            infra.kafka = KafkaBroker(Path(state["kafka_workdir"]), port=state["kafka_port"])
        if state["postgres_workdir"]:
            infra.postgres = PostgresServer(
                Path(state["postgres_workdir"]), port=state["postgres_port"]
            )
        return infra
