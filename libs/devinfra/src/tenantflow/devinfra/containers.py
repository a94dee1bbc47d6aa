"""The same infrastructure from testcontainers, where a Docker engine exists."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:17-alpine"


class _Containers:
    def __init__(self, kafka: object, bootstrap_servers: str, database_url: str) -> None:
        self._kafka = kafka
        self.bootstrap_servers = bootstrap_servers
        self.database_url = database_url

    def describe_producers(self, topic: str, partition: int) -> str:
        result = self._kafka.exec(  # type: ignore[attr-defined]
            [
                "/opt/kafka/bin/kafka-transactions.sh",
                "--bootstrap-server",
                "localhost:9092",
                "describe-producers",
                "--topic",
                topic,
                "--partition",
                str(partition),
            ]
        )
        output: bytes = result.output
        return output.decode()


@contextmanager
def container_infra() -> Iterator[_Containers]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
        PostgresContainer(POSTGRES_IMAGE, driver="asyncpg", dbname="tenantflow") as postgres,
    ):
        yield _Containers(kafka, kafka.get_bootstrap_server(), postgres.get_connection_url())
