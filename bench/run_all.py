"""`make bench`: every benchmark under bench/, one after the other (the machine is shared and
noisy; two at once would measure each other), each within its deadline.

A progress bar shows the benchmark under way against its deadline. Each one's figures are
printed when it ends; its other output goes to bench/results/logs/<name>.log. A benchmark past
its deadline is interrupted (SIGINT, so it cleans up; SIGKILL a minute later) and marked timed
out, and the next one starts. At the end: bench/results/bench.json (every benchmark's status,
time and results) and the PNG plots (bench/plots.py). The exit status is non-zero if any
benchmark failed or timed out.

    uv run python bench/run_all.py [name ...]
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plots import plot_all
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
INTERRUPT_GRACE_S = 60.0


@dataclass(frozen=True)
class Benchmark:
    name: str
    deadline_s: float
    arguments: tuple[str, ...] = ()

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(ROOT / "bench" / f"{self.name}.py"), *self.arguments]


BENCHMARKS = (
    Benchmark("infra_start", 600),
    Benchmark("run_ready", 900),  # bench/cold_setup.py is not here: it measures the network too
    Benchmark("outbox_latency", 900),
    Benchmark("emulator_throughput", 900),
    Benchmark("link_latency", 900),
    Benchmark("deployment_latency", 900),
    Benchmark("intune_writer", 3600),  # the scripts' way alone takes about 9 minutes
    Benchmark("directory_sync", 1800),
    Benchmark("audit_replay", 1800),
)


def run(benchmark: Benchmark, progress: Progress, console: Console) -> dict[str, Any]:
    """Run ``benchmark`` to its end or its deadline; its record for bench.json."""
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    began, since = time.monotonic(), time.time()
    task = progress.add_task(benchmark.name, total=benchmark.deadline_s)
    out = logs / f"{benchmark.name}.out"
    with (logs / f"{benchmark.name}.log").open("w") as log, out.open("w") as figures_sink:
        process = subprocess.Popen(
            benchmark.command,
            cwd=ROOT,
            stdout=figures_sink,  # its figures: printed once it is done
            stderr=log,
            text=True,
            start_new_session=True,  # its group: interrupted whole at the deadline
        )
        status = "ok"
        try:
            while process.poll() is None:
                elapsed = time.monotonic() - began
                progress.update(task, completed=min(elapsed, benchmark.deadline_s))
                if elapsed > benchmark.deadline_s:
                    status = "timed out"
                    _interrupt(process)
                    break
                time.sleep(1.0)  # the bar's pace
        except KeyboardInterrupt:
            _interrupt(process)
            raise
        finally:
            progress.remove_task(task)
        figures = out.read_text(errors="replace")
        if status == "ok" and process.returncode != 0:
            status = f"failed (exit status {process.returncode})"
    seconds = round(time.monotonic() - began, 1)
    console.print(f"[bold]{benchmark.name}[/bold]: {status} in {seconds} s")
    for line in figures.strip().splitlines():
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    written = sorted(
        path
        for path in RESULTS.glob("*.json")
        if path.stat().st_mtime >= since and path.name != "bench.json"
    )
    return {
        "name": benchmark.name,
        "command": " ".join(benchmark.command[1:]),
        "status": status,
        "seconds": seconds,
        "deadline_s": benchmark.deadline_s,
        "figures": figures.strip().splitlines(),
        "results": {path.name: json.loads(path.read_text()) for path in written},
    }


def _interrupt(process: subprocess.Popen[str]) -> None:
    """SIGINT to the benchmark's process group (it cleans up), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def main() -> None:
    wanted = set(sys.argv[1:])
    unknown = wanted - {b.name for b in BENCHMARKS}
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(sorted(unknown))}")
    chosen = [b for b in BENCHMARKS if not wanted or b.name in wanted]
    console = Console()
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    records = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("of its {task.total:.0f} s deadline"),
        console=console,
        transient=True,
    ) as progress:
        for n, benchmark in enumerate(chosen, 1):
            console.print(f"[{n}/{len(chosen)}] {benchmark.name} …")
            records.append(run(benchmark, progress, console))
    plots = plot_all()
    for line in plots:
        console.print(line)
    summary = {
        "started": started.isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "benchmarks": records,
        "plots": plots,
    }
    (RESULTS / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"bench/results/bench.json written ({len(records)} benchmarks)")
    failed = [r["name"] for r in records if r["status"] != "ok"]
    if failed:
        console.print(f"[red]not ok: {', '.join(failed)}[/red]")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
