"""The committed schemas and AsyncAPI document are what `make contracts` generates now."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from tenantflow.contracts import compat
from tenantflow.contracts.registry import EVENT_CLASSES, schema_file_name

pytestmark = pytest.mark.unit

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", CONTRACTS / "tools" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.event_type)
def test_committed_schema_is_current(cls: type) -> None:
    committed = json.loads((CONTRACTS / "schemas" / schema_file_name(cls)).read_text())
    assert committed == compat.current_schema(cls), "run `make contracts` and commit the result"


def test_committed_asyncapi_is_current() -> None:
    committed = json.loads((CONTRACTS / "asyncapi.json").read_text())
    assert committed == generator().asyncapi_document(), "run `make contracts`"


def test_asyncapi_documents_every_event_on_its_topic() -> None:
    document = json.loads((CONTRACTS / "asyncapi.json").read_text())
    channels = document["channels"]
    for cls in EVENT_CLASSES:
        name = f"{cls.topic.value}:{cls.event_type}:v{cls.schema_version}"
        assert name in channels, name
        assert channels[name]["address"] == cls.topic.value
