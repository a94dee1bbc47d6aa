"""The benchmarks' figures as PNG plots, from their JSON in bench/results/ (each plot is skipped,
and said so, when its benchmark has not run):

- deployment_latency.png: PUT accepted -> applied, the histogram of every change measured, its
  median and p99 against the targets (100 ms, 300 ms);
- intune_writer_throughput.png: the writer's writes over time against the most Intune's quota
  allows (every tenant's limit at once, again each window);
- audit_replay.png: the whole log's replay rate in each run, against the target (50,000/s).

    uv run python bench/plots.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def latency(result: dict[str, Any], out: Path) -> None:
    samples = result["accepted_to_applied_samples_ms"]
    summary = result["accepted_to_applied"]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.hist(samples, bins=40, color="#4878a8")
    for value, label, style in (
        (summary["median_ms"], f"median {summary['median_ms']} ms", "-"),
        (summary["p99_ms"], f"p99 {summary['p99_ms']} ms", "--"),
    ):
        axes.axvline(value, color="black", linestyle=style, label=label)
    axes.axvline(100, color="tab:green", linestyle=":", label="target median 100 ms")
    axes.axvline(300, color="tab:red", linestyle=":", label="target p99 300 ms")
    axes.set_xlabel("PUT accepted -> applied (ms)")
    axes.set_ylabel("changes")
    axes.set_title(f"Deployment latency, idle system ({len(samples)} changes)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def throughput(result: dict[str, Any], out: Path) -> None:
    series = result["writes_over_time"]
    times, writes = [t for t, _ in series], [n for _, n in series]
    per_window = result["tenants_written"] * result["limit_per_window"]
    window = result["window_s"]
    end = times[-1] if times else window
    allowed_t: list[float] = []
    allowed: list[int] = []
    for k in range(int(end // window) + 1):  # each window begun before the last write
        allowed_t += [k * window, min((k + 1) * window, end)]
        allowed += [per_window * (k + 1)] * 2
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.plot(times, writes, label="writes answered (emulator's log)", color="#4878a8")
    axes.plot(allowed_t, allowed, label="most the quota allows", color="tab:red", linestyle="--")
    axes.set_xlabel("seconds since Intune writing was enabled")
    axes.set_ylabel("writes (cumulative)")
    axes.set_title(
        f"Intune writer: {result['changes']} changes, {result['tenants']} tenants, "
        f"{result['seconds']} s (x{result['ratio_to_minimum']} the minimum)"
    )
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def replay(result: dict[str, Any], out: Path) -> None:
    rates = [result["events"] / seconds for seconds in result["whole_log_seconds"]]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.bar([f"run {n + 1}" for n in range(len(rates))], rates, color="#4878a8")
    axes.axhline(50_000, color="tab:red", linestyle="--", label="target 50,000 events/s")
    axes.set_ylabel("events/s, whole log end to end")
    axes.set_title(f"Audit replay of {result['events']:,} events")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def plot_all() -> list[str]:
    """Every plot whose benchmark has results; what was written or skipped, one line each."""
    said = []
    writer = _load("intune_writer.json")
    for name, result, draw in (
        ("deployment_latency.png", _load("deployment_latency.json"), latency),
        ("intune_writer_throughput.png", (writer or {}).get("throughput"), throughput),
        ("audit_replay.png", _load("audit_replay.json"), replay),
    ):
        if not result:
            said.append(f"{name}: skipped, its benchmark has no results yet")
            continue
        try:
            draw(result, RESULTS / name)
        except KeyError as missing:  # results of an older benchmark version
            said.append(f"{name}: skipped, its results lack {missing} (run its benchmark again)")
            continue
        said.append(f"{name}: written")
    return said


if __name__ == "__main__":
    for line in plot_all():
        print(line)
