"""What a user sees when the cluster or the database cannot be reached: one line saying so and
exit status 2, not a traceback."""

from __future__ import annotations

import pytest

from tenantflow.audit import cli

pytestmark = pytest.mark.unit

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


@pytest.mark.parametrize(
    "argv",
    [
        ["state", "--no-progress"],
        ["timeline", "--no-progress"],
        ["rebuild", "--target", "portal", "--into", "postgresql://postgres@127.0.0.1:1/x"],
    ],
)
def test_an_unreachable_cluster_or_database_is_one_line_and_exit_status_2(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", NOWHERE)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "tenantflow-audit:" in err or "not rebuilt:" in err
    assert "Traceback" not in err
