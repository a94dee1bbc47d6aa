"""The committed schemas and AsyncAPI document are what `make contracts` generates now."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tenantflow.contracts import compat
from tenantflow.contracts.common import EventPayload
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
def test_committed_schema_is_current(cls: type[EventPayload]) -> None:
    committed = json.loads((CONTRACTS / "schemas" / schema_file_name(cls)).read_text())
    problem = compat.explain(cls, committed)
    if problem:
        pytest.fail(problem, pytrace=False)


def test_a_refused_regeneration_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS / "schemas", root / "schemas")
    shutil.copytree(CONTRACTS / "examples", root / "examples")
    (root / "asyncapi.json").write_text("{}\n")  # stale: a run that went through rewrites it
    published = root / "schemas" / "dev.tenantflow.tenant.link.rejected" / "v1.json"
    schema = json.loads(published.read_text())
    schema["properties"]["legacy_code"] = {"type": "string"}  # a field the model no longer has
    published.write_text(json.dumps(schema))
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}

    assert generator().main(root) == 1

    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == before
    refusal = capsys.readouterr().err
    assert "dev.tenantflow.tenant.link.rejected v1" in refusal
    assert "'legacy_code' was removed" in refusal
    assert "v2" in refusal


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
