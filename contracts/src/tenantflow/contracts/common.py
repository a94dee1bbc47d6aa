"""Building blocks shared by every event payload."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from tenantflow.contracts.topics import Topic


class Contract(BaseModel):
    """Strict on the way out: a producer cannot send a field the contract does not know.

    Consumers decode with ``extra="ignore"`` (see ``envelope.decode_payload``), so a newer
    producer adding an optional field never breaks an older consumer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class UserActor(Contract):
    """A signed-in portal user, identified the way Entra ID does: tenant id plus object id."""

    kind: Literal["user"] = Field(default="user", description="Discriminator: a human user.")
    tenant_id: UUID = Field(
        description="Entra ID tenant (tid claim) of the user's home tenant.",
        examples=["6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10"],
    )
    object_id: UUID = Field(
        description="Entra ID object id (oid claim) of the user. Never an email or UPN.",
        examples=["0b6a7d3e-4c2f-4f7a-9d1e-5a8b2c3d4e5f"],
    )
    display_name: str | None = Field(
        default=None,
        max_length=256,
        description="The user's display name (name claim) when they acted, for auditors: "
        "names change, the object id identifies. Absent where it was not known.",
        examples=["Adele Vance"],
    )


class ServiceActor(Contract):
    """A tenantflow service acting on its own (a scheduled re-check, a dead-lettering consumer)."""

    kind: Literal["service"] = Field(default="service", description="Discriminator: a service.")
    service: str = Field(
        description="Name of the tenantflow service that acted.",
        examples=["consent"],
        pattern=r"^[a-z][a-z0-9-]*$",
    )


Actor = Annotated[UserActor | ServiceActor, Field(discriminator="kind")]


class EventPayload(Contract):
    """The data of one event. Subclasses set the class variables that place them on the bus."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int]
    topic: ClassVar[Topic]

    tenant_id: UUID = Field(
        description="The Entra ID tenant this event is about; also the message key and ce_subject.",
        examples=["6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10"],
    )
    actor: Actor = Field(description="Who caused this event: a user, or a service on its own.")
    correlation_id: UUID = Field(
        description="The change id: the same on every event of one user-initiated change.",
        examples=["3d5b8e0a-1f2c-4b6d-8e9f-0a1b2c3d4e5f"],
    )
    causation_id: str | None = Field(
        default=None,
        description="ce_id of the event that directly caused this one; null for the first event.",
        examples=["6a0f7b3e-2c1d-4e5f-8a9b-0c1d2e3f4a5b"],
    )
