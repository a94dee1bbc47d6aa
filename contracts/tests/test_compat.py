"""A published event version only ever changes additively."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from tenantflow.contracts import compat
from tenantflow.contracts.events import GroupUpserted, TenantLinkRejected
from tenantflow.contracts.registry import EVENT_CLASSES

pytestmark = pytest.mark.unit

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_current_models_keep_every_published_schema() -> None:
    assert compat.check_all(SCHEMAS) == []


def test_every_published_schema_is_committed() -> None:
    published = compat.load_published(SCHEMAS)
    assert len(published) == len(EVENT_CLASSES)


def published(cls: type[GroupUpserted]) -> compat.JsonSchema:
    return compat.load_published(SCHEMAS)[f"{cls.event_type}/v{cls.schema_version}.json"]


class _RetypedField(GroupUpserted):
    security_enabled: str = Field(description="now a string")  # type: ignore[assignment]


class _NewRequiredField(GroupUpserted):
    mail: str = Field(description="required: old events lack it")


class _NewOptionalField(GroupUpserted):
    mail: str | None = Field(default=None, description="optional: fine")


def _without(schema: compat.JsonSchema, field: str) -> compat.JsonSchema:
    trimmed = {**schema, "properties": dict(schema["properties"])}
    del trimmed["properties"][field]
    trimmed["required"] = [name for name in schema["required"] if name != field]
    return trimmed


def test_retyping_a_field_is_breaking() -> None:
    problems = compat.breaking_changes(
        published(GroupUpserted), compat.current_schema(_RetypedField)
    )
    assert problems == ["field 'security_enabled' changed type"]


def test_a_new_required_field_is_breaking() -> None:
    current = compat.current_schema(_NewRequiredField)
    assert compat.breaking_changes(published(GroupUpserted), current) == [
        "field 'mail' became required"
    ]


def test_removing_a_field_is_breaking() -> None:
    current = _without(compat.current_schema(GroupUpserted), "display_name")
    assert compat.breaking_changes(published(GroupUpserted), current) == [
        "field 'display_name' was removed",
        "field 'display_name' is no longer required",
    ]


def test_an_optional_field_and_new_prose_are_additive() -> None:
    current = compat.current_schema(_NewOptionalField)
    current["properties"]["display_name"]["description"] = "reworded"
    assert compat.breaking_changes(published(GroupUpserted), current) == []


def test_a_published_version_without_its_class_is_reported(tmp_path: Path) -> None:
    orphan = tmp_path / "dev.tenantflow.gone" / "v1.json"
    orphan.parent.mkdir()
    orphan.write_text("{}")
    assert "dev.tenantflow.gone/v1.json: published, but no event class has this version" in (
        compat.check_all(tmp_path)
    )


def test_a_nested_field_removed_is_named_by_its_path() -> None:
    current = compat.current_schema(GroupUpserted)
    old = published(GroupUpserted)
    user_actor = old["$defs"]["UserActor"]
    old = {
        **old,
        "$defs": {
            **old["$defs"],
            "UserActor": {
                **user_actor,
                "properties": {**user_actor["properties"], "upn": {"type": "string"}},
            },
        },
    }
    assert compat.breaking_changes(old, current) == ["field 'actor.upn' was removed"]


def _with_reason(schema: compat.JsonSchema, values: list[str]) -> compat.JsonSchema:
    defs = dict(schema["$defs"])
    defs["VerificationFailure"] = {**defs["VerificationFailure"], "enum": values}
    return {**schema, "$defs": defs}


def test_an_enumeration_may_gain_values_but_not_lose_one() -> None:
    rejected = compat.current_schema(TenantLinkRejected)
    values = rejected["$defs"]["VerificationFailure"]["enum"]
    fewer = _with_reason(rejected, values[:-1])
    more = _with_reason(rejected, [*values, "a_value_gone_since"])
    assert compat.breaking_changes(fewer, rejected) == []
    assert compat.breaking_changes(more, rejected) == [
        "field 'reason' lost the value 'a_value_gone_since'"
    ]


def test_explain_names_the_event_its_version_and_the_field() -> None:
    committed = _without(compat.current_schema(GroupUpserted), "display_name")
    committed["properties"]["legacy"] = {"type": "string"}
    committed["required"] = [*committed["required"], "legacy"]
    message = compat.explain(GroupUpserted, committed)
    assert message is not None
    assert message.startswith(f"{GroupUpserted.event_type} v1 is published")
    assert "field 'legacy' was removed" in message
    assert "publish the change as v2" in message
    additive = compat.explain(_NewOptionalField, published(GroupUpserted))
    assert additive is not None
    assert "new fields 'mail'" in additive
    assert "make contracts" in additive
    assert compat.explain(GroupUpserted, compat.current_schema(GroupUpserted)) is None
