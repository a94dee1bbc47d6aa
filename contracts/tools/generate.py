"""Regenerate the committed contract artefacts: ``make contracts``.

- ``schemas/<type>/v<n>.json``: the JSON Schema of every event version. A published schema is
  only rewritten when the change is additive; a breaking change stops the whole run before it
  writes anything, naming the event, version and field, and asks for a new version instead.
- ``examples/<type>/v<n>.json``: created from the fields' examples when missing, never
  overwritten (a committed example is a promise that old events still decode).
- ``asyncapi.json``: the AsyncAPI document FastStream produces for the topics and events.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from tenantflow.contracts import compat
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.registry import EVENT_CLASSES, schema_file_name
from tenantflow.contracts.topics import TOPIC_CONFIGS

ROOT = Path(__file__).resolve().parents[1]


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _example_value(field_info: Any, annotation: Any) -> Any:
    if field_info.examples:
        return field_info.examples[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return example_of(annotation)
    return field_info.get_default(call_default_factory=True)


def example_of(cls: type[BaseModel]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        result[name] = _example_value(info, info.annotation)
    return result


def refusals(schemas: Path) -> list[str]:
    """Why regenerating would break a published version; empty when it may go ahead."""
    published = compat.load_published(schemas)
    problems: list[str] = []
    for cls in EVENT_CLASSES:
        name = schema_file_name(cls)
        if name in published and compat.breaking_changes(
            published[name], compat.current_schema(cls)
        ):
            problems.append(str(compat.explain(cls, published[name])))
    return problems


def write_schemas(schemas: Path) -> None:
    for cls in EVENT_CLASSES:
        path = schemas / schema_file_name(cls)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dump(compat.current_schema(cls)))


def write_missing_examples(examples: Path, overrides: dict[str, dict[str, Any]]) -> None:
    for cls in EVENT_CLASSES:
        path = examples / schema_file_name(cls)
        if path.exists():
            continue
        example = _base_example(cls) | overrides.get(cls.event_type, {})
        cls.model_validate(example)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dump(example))


def _base_example(cls: type[EventPayload]) -> dict[str, Any]:
    example = example_of(cls)
    example["actor"] = {
        "kind": "user",
        "tenant_id": "6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10",
        "object_id": "0b6a7d3e-4c2f-4f7a-9d1e-5a8b2c3d4e5f",
    }
    return example


_ASSIGNMENT = {
    "target": {"kind": "group", "group_id": "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"},
    "intent": "required",
    "filter": {"filter_id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "mode": "include"},
}
_DEAD_LETTER_HEADERS = [
    {"name": "ce_specversion", "value": "1.0"},
    {"name": "ce_type", "value": "dev.tenantflow.tenant.link.requested"},
]
_REQUIRED_WITH_SETTINGS = {
    **_ASSIGNMENT,
    "settings": {
        "notifications": "showReboot",
        "restart": {"grace_period_minutes": 1440, "countdown_minutes": 15},
        "deadline": "2026-12-01T18:00:00Z",
    },
}
_EXCLUSION = {
    "target": {"kind": "exclusion_group", "group_id": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"},
    "intent": "required",
}
_DESIRED = [_REQUIRED_WITH_SETTINGS, _EXCLUSION]
# keyed by event type: they shape the example of whichever version is missing (the newest)
EXAMPLE_OVERRIDES: dict[str, dict[str, Any]] = {
    "dev.tenantflow.deployment.change.requested": {
        "desired_assignments": _DESIRED,
        "previous_assignments": [_EXCLUSION],
    },
    "dev.tenantflow.deployment.change.applied": {
        "assignments_before": [_EXCLUSION],
        "written_assignments": _DESIRED,
    },
    "dev.tenantflow.directory.assignment_filters.synced": {
        "actor": {"kind": "service", "service": "intune-writer"},
        "filters": [
            {
                "filter_id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                "display_name": "Windows 11 devices",
                "platform": "windows10AndLater",
                "management_type": "devices",
            }
        ],
    },
    "dev.tenantflow.deployment.change.failed": {
        "graph_error": {
            "status": 400,
            "code": "BadRequest",
            "message": "The mobile app is not assignable.",
            "request_id": "7f3a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0",
        }
    },
    "dev.tenantflow.deadlettered": {
        "actor": {"kind": "service", "service": "consent"},
        "original_headers": _DEAD_LETTER_HEADERS,
    },
    "dev.tenantflow.tenant.consent.revoked": {"actor": {"kind": "service", "service": "consent"}},
}


def asyncapi_document() -> dict[str, Any]:
    broker = KafkaBroker("localhost:9092", description="tenantflow's event bus")
    for config in TOPIC_CONFIGS.values():
        for cls in EVENT_CLASSES:
            if cls.topic is config.topic:
                broker.publisher(
                    config.name,
                    title=f"{config.name}:{cls.event_type}:v{cls.schema_version}",
                    description=f"{config.description} {cls.__doc__ or ''}".strip(),
                    schema=cls,
                    include_in_schema=True,
                )
    spec = AsyncAPI(broker, title="tenantflow events", version="1.0.0", schema_version="3.0.0")
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document


def main(root: Path = ROOT) -> int:
    problems = refusals(root / "schemas")
    if problems:
        print(
            "Nothing was written: these changes break published event versions.",
            *problems,
            sep="\n  ",
            file=sys.stderr,
        )
        return 1
    write_schemas(root / "schemas")
    write_missing_examples(root / "examples", EXAMPLE_OVERRIDES)
    (root / "asyncapi.json").write_text(_dump(asyncapi_document()))
    print(f"{len(EVENT_CLASSES)} event versions: schemas, examples and asyncapi.json are current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
