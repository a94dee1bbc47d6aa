"""Within a published schema version, changes are additive only.

A published version's JSON Schema is committed under ``contracts/schemas``. The current model is
compatible with it when every published field, nested ones included, still exists with the same
type, and the set of required fields is unchanged (a new required field would reject events
already in the log). Descriptions, titles and examples may change freely. An enumeration may gain
values but never lose one: a producer emits a new value only once its consumers know it, so
deploy consumers first. Every problem names the field, by its dotted path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.registry import EVENT_CLASSES, schema_file_name

JsonSchema = dict[str, Any]
_PROSE = frozenset({"description", "title", "examples"})
_SHAPE = ("properties", "required", "additionalProperties")


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


def _differences(old: Any, new: Any, path: str) -> list[str]:
    """What ``new`` breaks of ``old`` (both resolved), at the field ``path``."""
    if isinstance(old, dict) and isinstance(new, dict):
        problems: list[str] = []
        if "enum" in old and "enum" in new:
            problems += [
                f"field {path!r} lost the value {value!r}"
                for value in old["enum"]
                if value not in new["enum"]
            ]
        if "properties" in old and "properties" in new:
            problems += _object_differences(old, new, path)
        elif "properties" in old or "properties" in new:
            problems.append(f"field {path!r} changed type")
        handled = {"enum", "properties", "required", "additionalProperties"}
        for key in sorted((old.keys() | new.keys()) - handled):
            if key not in old or key not in new:
                problems.append(f"field {path!r} changed type")
            else:
                problems += _differences(old[key], new[key], path)
        if "properties" not in old and old.get("additionalProperties") != new.get(
            "additionalProperties"
        ):
            problems.append(f"field {path!r} changed type")
        return list(dict.fromkeys(problems))
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return list(
            dict.fromkeys(
                p for o, n in zip(old, new, strict=True) for p in _differences(o, n, path)
            )
        )
    return [] if old == new else [f"field {path!r} changed type"]


def _object_differences(old: JsonSchema, new: JsonSchema, path: str) -> list[str]:
    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    problems: list[str] = []
    new_props = new.get("properties", {})
    for name, old_field in old.get("properties", {}).items():
        if name not in new_props:
            problems.append(f"field {at(name)!r} was removed")
        else:
            problems += _differences(old_field, new_props[name], at(name))
    old_required = set(old.get("required", []))
    new_required = set(new.get("required", []))
    problems += [
        f"field {at(name)!r} became required" for name in sorted(new_required - old_required)
    ]
    problems += [
        f"field {at(name)!r} is no longer required" for name in sorted(old_required - new_required)
    ]
    if old.get("additionalProperties") != new.get("additionalProperties"):
        problems.append(f"additionalProperties of {path or 'the event'} changed")
    return problems


def breaking_changes(published: JsonSchema, current: JsonSchema) -> list[str]:
    """What the current schema breaks of the published one; empty when compatible."""
    old = _resolve(
        {k: published.get(k) for k in _SHAPE if k in published}, published.get("$defs", {})
    )
    new = _resolve({k: current.get(k) for k in _SHAPE if k in current}, current.get("$defs", {}))
    return _object_differences(old, new, "")


def added_fields(published: JsonSchema, current: JsonSchema) -> list[str]:
    """Top-level fields the current schema has and the published one does not."""
    return sorted(set(current.get("properties", {})) - set(published.get("properties", {})))


def explain(cls: type[EventPayload], published: JsonSchema) -> str | None:
    """Why the committed schema of ``cls`` is not the current one, for a human; None when it
    is. Names the event, its version and every field concerned."""
    current = current_schema(cls)
    if published == current:
        return None
    version = f"{cls.event_type} v{cls.schema_version}"
    broken = breaking_changes(published, current)
    if broken:
        return (
            f"{version} is published, and this change breaks it: {'; '.join(broken)}. Keep "
            f"v{cls.schema_version} as it is and publish the change as v{cls.schema_version + 1}."
        )
    added = added_fields(published, current)
    what = f"new fields {', '.join(map(repr, added))}" if added else "descriptions or examples"
    return f"{version} changed additively ({what}): run `make contracts` and commit the result."


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
                f"{cls.event_type} v{cls.schema_version}: {p}"
                for p in breaking_changes(published[name], current_schema(cls))
            ]
    problems += [
        f"{name}: published, but no event class has this version"
        for name in sorted(set(published) - claimed)
    ]
    return problems
