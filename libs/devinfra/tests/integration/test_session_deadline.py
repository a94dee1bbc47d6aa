"""A test session that hangs is a loud failure at its deadline, not a run that never ends: it
prints the stacks, kills what it started, and exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tenantflow.devinfra.pytest_plugin import DEADLINE_ENV, DEADLINE_EXIT

pytestmark = pytest.mark.integration

HANGING_TEST = """
import subprocess, sys, threading
from pathlib import Path

import pytest


@pytest.mark.unit
def test_hangs() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"])
    Path("child.pid").write_text(str(child.pid))
    threading.Event().wait()  # a hang: nothing will ever set it
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"  # a zombie is dead, only not yet reaped


def test_a_hanging_session_fails_loudly_at_its_deadline(tmp_path: Path) -> None:
    (tmp_path / "test_hang.py").write_text(textwrap.dedent(HANGING_TEST))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    unit\n    integration\n    e2e\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tenantflow.devinfra.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=0",
            "test_hang.py",
        ],
        cwd=tmp_path,
        env={**os.environ, DEADLINE_ENV: "3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == DEADLINE_EXIT, run.stdout + run.stderr
    assert "passed its deadline of 3 s" in run.stderr
    assert "test_hangs" in run.stderr  # the stack shows where it hung
    assert not alive(int((tmp_path / "child.pid").read_text()))
