"""A published event version only ever changes additively."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from tenantflow.contracts import compat
from tenantflow.contracts.events import GroupUpserted
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
