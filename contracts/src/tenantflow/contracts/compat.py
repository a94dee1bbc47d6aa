"""Within a published schema version, changes are additive only.

A published version's JSON Schema is committed under ``contracts/schemas``. The current model is
compatible with it when every published field still exists with the same type, and the set of
required fields is unchanged (a new required field would reject events already in the log).
Descriptions, titles and examples may change freely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.registry import EVENT_CLASSES, schema_file_name

JsonSchema = dict[str, Any]
_PROSE = frozenset({"description", "title", "examples"})


def current_schema(cls: type[EventPayload]) -> JsonSchema:
    schema = cls.model_json_schema(mode="validation")
    schema["$id"] = f"urn:tenantflow:{cls.event_type}:v{cls.schema_version}"
    schema["x-event-type"] = cls.event_type
    schema["x-schema-version"] = cls.schema_version
    schema["x-topic"] = cls.topic.value
    return schema


def _resolve(node: Any, defs: JsonSchema) -> Any:
    """Inline every local $ref and drop prose, so two schemas compare by shape alone."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return _resolve(defs[name], defs)
        return {k: _resolve(v, defs) for k, v in node.items() if k not in _PROSE}
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    return node


def breaking_changes(published: JsonSchema, current: JsonSchema) -> list[str]:
    """What the current schema breaks of the published one; empty when compatible."""
    problems: list[str] = []
    old_defs = published.get("$defs", {})
    new_defs = current.get("$defs", {})
    old_props = published.get("properties", {})
    new_props = current.get("properties", {})
    for name, old in old_props.items():
        if name not in new_props:
            problems.append(f"field {name!r} was removed")
        elif _resolve(old, old_defs) != _resolve(new_props[name], new_defs):
            problems.append(f"field {name!r} changed type")
    old_required = set(published.get("required", []))
    new_required = set(current.get("required", []))
    for name in sorted(new_required - old_required):
        problems.append(f"field {name!r} became required")
    for name in sorted(old_required - new_required):
        problems.append(f"field {name!r} is no longer required")
    if published.get("additionalProperties") != current.get("additionalProperties"):
        problems.append("additionalProperties changed")
    return problems


def load_published(schemas_dir: Path) -> dict[str, JsonSchema]:
    """Every committed schema, by its path relative to ``schemas_dir``."""
    return {
        path.relative_to(schemas_dir).as_posix(): json.loads(path.read_text())
        for path in sorted(schemas_dir.rglob("v*.json"))
    }


def check_all(schemas_dir: Path) -> list[str]:
    """Every breaking change, and every published schema no model claims any more."""
    published = load_published(schemas_dir)
    problems: list[str] = []
    claimed = set()
    for cls in EVENT_CLASSES:
        name = schema_file_name(cls)
        claimed.add(name)
        if name in published:
            problems += [
                f"{name}: {p}" for p in breaking_changes(published[name], current_schema(cls))
            ]
    problems += [
        f"{name}: published, but no event class has this version"
        for name in sorted(set(published) - claimed)
    ]
    return problems
