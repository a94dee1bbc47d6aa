"""Create the contracts' topics on a cluster, with their configs. Safe to run concurrently."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from tenantflow.bus.clients import connection_kwargs
from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.topics import TOPIC_CONFIGS, TopicConfig


async def ensure_topics(
    settings: KafkaSettings, configs: list[TopicConfig] | None = None
) -> list[str]:
    """Create the missing topics; return the names created."""
    admin = AIOKafkaAdminClient(**connection_kwargs(settings, "tenantflow-topics"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        cluster = await admin.describe_cluster()
        brokers = max(1, len(cluster["brokers"]))
        prefix = settings.topic_prefix
        wanted = [
            c for c in (configs or list(TOPIC_CONFIGS.values())) if prefix + c.name not in existing
        ]
        if not wanted:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name=prefix + config.name,
                    num_partitions=config.partitions,
                    replication_factor=config.replicas(brokers),
                    topic_configs=config.kafka_config(brokers),
                )
                for config in wanted
            ]
        )
        created = []
        for topic, code, *message in response.topic_errors:
            error = for_code(code)
            if error is TopicAlreadyExistsError:  # another service created it meanwhile
                continue
            if code != 0:
                raise error(f"creating topic {topic}: {message}")
            created.append(topic)
        await _until_led(admin, created)
        return created
    finally:
        await admin.close()


async def _until_led(admin: AIOKafkaAdminClient, topics: list[str], seconds: float = 30.0) -> None:
    """A topic accepts writes once every partition has a leader; creation returns before."""
    deadline = asyncio.get_running_loop().time() + seconds
    while topics:
        described = await admin.describe_topics(topics)
        if all(
            topic["error_code"] == 0
            and topic["partitions"]
            and all(partition["leader"] >= 0 for partition in topic["partitions"])
            for topic in described
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics {topics} have no partition leaders after {seconds} s")
        await asyncio.sleep(0.05)
