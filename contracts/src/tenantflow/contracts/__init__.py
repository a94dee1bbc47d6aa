"""tenantflow's event contracts: the only code that crosses service boundaries."""

from tenantflow.contracts.common import (
    Actor,
    Contract,
    EventPayload,
    ServiceActor,
    UserActor,
)
from tenantflow.contracts.envelope import (
    Envelope,
    EnvelopeError,
    UnknownEventType,
    decode,
)
from tenantflow.contracts.registry import EVENT_CLASSES, REGISTRY
from tenantflow.contracts.topics import TOPIC_CONFIGS, Topic, TopicConfig

__all__ = [
    "EVENT_CLASSES",
    "REGISTRY",
    "TOPIC_CONFIGS",
    "Actor",
    "Contract",
    "Envelope",
    "EnvelopeError",
    "EventPayload",
    "ServiceActor",
    "Topic",
    "TopicConfig",
    "UnknownEventType",
    "UserActor",
    "decode",
]
