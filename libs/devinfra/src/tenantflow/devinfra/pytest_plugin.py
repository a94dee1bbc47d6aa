"""pytest fixtures for the integration tiers: one real Kafka broker and one PostgreSQL per test
session, started on first use and stopped at the end.

TENANTFLOW_TEST_INFRA=local (default) runs them from this machine (devinfra); =containers uses
testcontainers where a Docker engine exists. KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL point the
local mode at existing servers instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import pytest

from tenantflow.devinfra.infra import LocalInfra
from tenantflow.emulator.testing import RunningEmulator, running_emulator


class RunningInfra(Protocol):
    bootstrap_servers: str
    database_url: str

    def describe_producers(self, topic: str, partition: int) -> str:
        """Kafka's own view of the producers that wrote to a partition (kafka-transactions)."""
        ...


class _Local:
    def __init__(self, infra: LocalInfra) -> None:
        self._infra = infra
        self.bootstrap_servers = infra.bootstrap_servers
        self.database_url = infra.database_url

    def describe_producers(self, topic: str, partition: int) -> str:
        assert self._infra.kafka is not None, "needs the local broker's tools"
        return self._infra.kafka.tool(
            "org.apache.kafka.tools.TransactionsCommand",
            "--bootstrap-server",
            self.bootstrap_servers,
            "describe-producers",
            "--topic",
            topic,
            "--partition",
            str(partition),
        )


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningInfra]:
    mode = os.environ.get("TENANTFLOW_TEST_INFRA", "local")
    if mode == "containers":
        from tenantflow.devinfra.containers import container_infra

        with container_infra() as started:
            yield started
        return
    if mode != "local":
        raise pytest.UsageError(f"TENANTFLOW_TEST_INFRA={mode!r}: use local or containers")
    local = LocalInfra(
        workdir=tmp_path_factory.mktemp("infra"), durable=False, bound_to_parent=True
    )
    local.start()
    try:
        yield _Local(local)
    finally:
        local.stop()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One Entra ID and Graph emulator process per test session, over real HTTPS."""
    with running_emulator(tmp_path_factory.mktemp("emulator")) as started:
        yield started


TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier, so `make test-unit` never misses or mixes one."""
    for item in items:
        tiers = [tier for tier in TIERS if item.get_closest_marker(tier)]
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: mark it with one of {TIERS}, not {tiers}")
