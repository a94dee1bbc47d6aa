"""Topic names and their configurations: the bus's shape lives in the contracts.

Every message is keyed by tenant id, so one tenant's events share a partition and stay in order.
A topic's events of every type share it, so command and result events of one tenant are ordered
relative to each other, which is what an auditor replaying the log needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

FOREVER = "-1"
SEVEN_DAYS_MS = str(7 * 24 * 60 * 60 * 1000)


class Topic(StrEnum):
    TENANTS = "tenantflow.tenants"
    DIRECTORY = "tenantflow.directory"
    DEPLOYMENTS = "tenantflow.deployments"
    DEAD_LETTER = "tenantflow.deadletter"


@dataclass(frozen=True)
class TopicConfig:
    topic: Topic
    description: str
    partitions: int
    audit: bool
    """Kept forever: auditors replay it to see who changed what, when, and what was written."""
    replication_factor: int = 3
    """Wanted in production; capped at the number of brokers when the topic is created."""
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.topic.value

    def kafka_config(self, brokers: int) -> dict[str, str]:
        """The topic-level configs to create it with on a cluster of ``brokers`` brokers."""
        config = {
            "cleanup.policy": "delete",
            "retention.ms": FOREVER if self.audit else SEVEN_DAYS_MS,
            "retention.bytes": "-1",
            "min.insync.replicas": str(max(1, min(2, brokers - 1))),
        }
        config.update(self.extra_config)
        return config

    def replicas(self, brokers: int) -> int:
        return max(1, min(self.replication_factor, brokers))


TOPIC_CONFIGS: dict[Topic, TopicConfig] = {
    config.topic: config
    for config in (
        TopicConfig(
            Topic.TENANTS,
            "Tenant lifecycle: link, Intune writing activation, consent revocation, unlink.",
            partitions=6,
            audit=True,
        ),
        TopicConfig(
            Topic.DIRECTORY,
            "Directory cache: sync requests and results, group changes. Rebuilt by a full sync.",
            partitions=6,
            audit=False,
        ),
        TopicConfig(
            Topic.DEPLOYMENTS,
            "Deployment changes from request to the result written to Microsoft Graph.",
            partitions=12,
            audit=True,
        ),
        TopicConfig(
            Topic.DEAD_LETTER,
            "Messages a consumer could not decode or process, with the reason.",
            partitions=3,
            audit=True,
        ),
    )
}
