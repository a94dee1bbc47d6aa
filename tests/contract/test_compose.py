"""compose.yaml cannot run here (no Docker engine), so its structure is checked instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantflow.bus.settings import ServiceSettings
from tenantflow.devinfra.services import SERVICES as RUN_SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = tuple(RUN_SERVICES)
"""The one list `make run` and the tests start (tenantflow.devinfra.services)."""
WORKERS = tuple(name for name in SERVICES if name != "portal-api")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_infrastructure_is_kraft_kafka_and_postgres(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "zookeeper" not in str(kafka).lower()
    assert compose["services"]["postgres"]["image"].startswith("postgres:")


def test_every_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "tools" in service.get("profiles", []):
            continue  # a command run on demand, not a container that stays up
        assert service.get("healthcheck", {}).get("test"), name


def test_the_audit_tool_runs_on_demand_with_the_services_kafka(compose: dict[str, Any]) -> None:
    audit = compose["services"]["audit"]
    assert audit["profiles"] == ["tools"]  # not started by `docker compose up`
    assert audit["build"]["args"] == {"SERVICE": "audit", "PACKAGE_DIR": "tools/audit"}
    assert (ROOT / "tools" / "audit" / "pyproject.toml").is_file()
    assert audit["entrypoint"] == ["tenantflow-audit"]
    assert audit["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert "DATABASE_URL" not in audit["environment"]  # it reads the log, never a database


@pytest.mark.parametrize("name", SERVICES)
def test_services_build_from_the_repo_and_wait_for_healthy_infra(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    assert service["build"]["context"] == "."
    assert service["build"]["args"]["SERVICE"] == name
    assert (ROOT / "services" / name / "pyproject.toml").is_file()
    assert service["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
        "emulator": {"condition": "service_healthy"},
    }
    assert "emulator-state:/emulator:ro" in service["volumes"]
    env = service["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["DATABASE_URL"]


@pytest.mark.parametrize("name", SERVICES)
def test_docker_waits_longer_than_a_service_takes_to_stop(
    compose: dict[str, Any], name: str
) -> None:
    """Docker sends SIGKILL after stop_grace_period; the service exits within its own grace."""
    grace = compose["services"][name]["stop_grace_period"]
    seconds = float(re.fullmatch(r"(\d+)s", grace).group(1))  # type: ignore[union-attr]
    assert seconds > ServiceSettings().shutdown_grace_seconds


@pytest.mark.parametrize("name", WORKERS)
def test_workers_can_scale(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert "container_name" not in service
    assert "ports" not in service  # a fixed host port would collide at --scale 2


def test_the_emulator_serves_its_demo_tenants_with_a_ca_the_services_share(
    compose: dict[str, Any],
) -> None:
    emulator = compose["services"]["emulator"]
    assert emulator["build"]["args"] == {"SERVICE": "emulator", "PACKAGE_DIR": "emulator"}
    assert emulator["command"] == ["tenantflow-emulator", "--seed", "demo"]
    assert emulator["environment"]["TENANTFLOW_EMULATOR_PUBLIC_HOST"] == "emulator"
    assert "emulator-state:/state" in emulator["volumes"]
    consent = compose["services"]["consent"]["environment"]
    assert consent["TENANTFLOW_CONSENT_GRAPH_BASE_URL"] == "https://emulator:8443"
    assert consent["TENANTFLOW_CONSENT_CA_BUNDLE"] == "/emulator/tls/ca.pem"
    assert "emulator-state" in compose["volumes"]


def test_kafka_advertises_the_listener_services_use(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_dockerfile_syncs_dependencies_in_two_steps() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    syncs = re.findall(r"uv sync [^\n]*", dockerfile)
    assert len(syncs) == 2
    assert "--no-install-workspace" in syncs[0]
    assert "--frozen" in syncs[0]
    assert "--frozen" in syncs[1]
    members = (
        "contracts",
        "libs/bus",
        "libs/graph",
        "emulator",
        *(f"services/{s}" for s in SERVICES),
    )
    for member in members:
        assert f"COPY {member}/pyproject.toml" in dockerfile, member
    for library in ("contracts", "libs/bus", "libs/graph"):  # what the services import
        assert f"COPY {library} {library}" in dockerfile, library


def test_compose_runs_the_services_make_run_runs(compose: dict[str, Any]) -> None:
    built = {
        name
        for name, service in compose["services"].items()
        if "build" in service and "tools" not in service.get("profiles", [])
    }
    assert built - {"emulator"} == set(SERVICES)  # the emulator stands in for Microsoft
