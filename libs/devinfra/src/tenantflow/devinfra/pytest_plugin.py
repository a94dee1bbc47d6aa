"""pytest fixtures for the integration tiers: one real Kafka broker and one PostgreSQL per test
session, started on first use and stopped at the end.

TENANTFLOW_TEST_INFRA=local (default) runs them from this machine (devinfra); =containers uses
testcontainers where a Docker engine exists. KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL point the
local mode at existing servers instead.

The whole session has a deadline (TENANTFLOW_TEST_DEADLINE_SECONDS, default 1200; 0 turns it
off): a run still going then, hung in a test or in a teardown, prints every thread's stack, kills
every process it started and exits with status 3, a loud failure instead of a silent hang.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
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


DEADLINE_ENV = "TENANTFLOW_TEST_DEADLINE_SECONDS"
DEFAULT_DEADLINE_S = 1200.0
DEADLINE_EXIT = 3
_deadline = pytest.StashKey[threading.Timer]()


def pytest_configure(config: pytest.Config) -> None:
    seconds = float(os.environ.get(DEADLINE_ENV, DEFAULT_DEADLINE_S))
    if seconds > 0:
        watchdog = threading.Timer(seconds, _deadline_exceeded, args=(config, seconds))
        watchdog.daemon = True
        watchdog.start()
        config.stash[_deadline] = watchdog


def pytest_unconfigure(config: pytest.Config) -> None:
    watchdog = config.stash.get(_deadline, None)
    if watchdog is not None:
        watchdog.cancel()


def _deadline_exceeded(config: pytest.Config, seconds: float) -> None:
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with contextlib.suppress(Exception):  # say it on the real stderr, not a capture buffer
            capture.suspend(in_=True)
    sys.stderr.write(
        f"\n\n{'!' * 30} the test session passed its deadline of {seconds:.0f} s "
        f"({DEADLINE_ENV}); something hangs. Every thread's stack: {'!' * 30}\n"
    )
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    killed = _kill_descendants(os.getpid())
    sys.stderr.write(f"killed the {len(killed)} processes this run started; exiting\n")
    sys.stderr.flush()
    os._exit(DEADLINE_EXIT)


def _kill_descendants(pid: int) -> list[int]:
    """SIGKILL every process below ``pid`` (brokers, databases, emulators, services), read from
    /proc, deepest first; whatever is not there (not Linux) is left alone."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    for child in reversed(found):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    return found
