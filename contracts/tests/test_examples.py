"""Every committed example decodes with the current model and matches its committed schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tenantflow.contracts.registry import EVENT_CLASSES, REGISTRY, schema_file_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("v*.json"))


def test_every_event_version_has_an_example_and_a_schema() -> None:
    for cls in EVENT_CLASSES:
        assert (ROOT / "examples" / schema_file_name(cls)).is_file(), cls.event_type
        assert (ROOT / "schemas" / schema_file_name(cls)).is_file(), cls.event_type


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_example_is_valid(path: Path) -> None:
    event_type = path.parent.name
    version = int(path.stem.removeprefix("v"))
    example = json.loads(path.read_text())

    model = REGISTRY[(event_type, version)]
    model.model_validate(example)  # producers are strict: no unknown fields either

    schema = json.loads((ROOT / "schemas" / event_type / path.name).read_text())
    jsonschema.Draft202012Validator(schema).validate(example)
