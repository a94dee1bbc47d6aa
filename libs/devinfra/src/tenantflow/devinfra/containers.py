"""The same infrastructure from testcontainers, where a Docker engine exists
(TENANTFLOW_TEST_INFRA=containers; `uv sync --group containers`).

testcontainers' own KafkaContainer drives Confluent's image scripts, so Apache Kafka's image is
configured here directly, the way compose.yaml does: KRaft, one node. The host listener is bound
to a fixed free port so it can be advertised before the container starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tenantflow.devinfra.processes import free_port

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:17-alpine"
INTERNAL_PORT = 19092


class _Containers:
    def __init__(self, kafka: Any, bootstrap_servers: str, database_url: str) -> None:
        self._kafka = kafka
        self.bootstrap_servers = bootstrap_servers
        self.database_url = database_url

    def describe_producers(self, topic: str, partition: int) -> str:
        result = self._kafka.exec(
            [
                "/opt/kafka/bin/kafka-transactions.sh",
                "--bootstrap-server",
                f"localhost:{INTERNAL_PORT}",
                "describe-producers",
                "--topic",
                topic,
                "--partition",
                str(partition),
            ]
        )
        output: bytes = result.output
        return output.decode()


def _kafka_container(host_port: int) -> Any:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    environment = {
        "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": f"INTERNAL://:{INTERNAL_PORT},CONTROLLER://:9093,HOST://:9092",
        "KAFKA_ADVERTISED_LISTENERS": (
            f"INTERNAL://localhost:{INTERNAL_PORT},HOST://localhost:{host_port}"
        ),
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
        ),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_GROUP_COORDINATOR_APPEND_LINGER_MS": "0",
        "KAFKA_HEAP_OPTS": "-Xms512m -Xmx512m",
    }
    return (
        DockerContainer(KAFKA_IMAGE)
        .with_envs(**environment)
        .with_bind_ports(9092, host_port)
        .waiting_for(LogMessageWaitStrategy("Kafka Server started"))
    )


@contextmanager
def container_infra() -> Iterator[_Containers]:
    from testcontainers.postgres import PostgresContainer

    host_port = free_port()
    with (
        _kafka_container(host_port) as kafka,
        PostgresContainer(POSTGRES_IMAGE, driver="asyncpg", dbname="tenantflow") as postgres,
    ):
        yield _Containers(kafka, f"localhost:{host_port}", postgres.get_connection_url())
