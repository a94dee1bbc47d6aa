"""Cold `make setup` on a machine with nothing but Python: a copy of the repository (its tracked
files), a PATH without uv, Java or Maven, empty uv and Kafka caches. It downloads uv, every
wheel and the broker's jars (PyPI and Maven Central), so it is not part of `make bench`: its
figure is the network's as much as the machine's.

Prints the figures and writes JSON to bench/results/cold_setup.json.

    uv run python bench/cold_setup.py [--runs 3] [--warm-uv-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tenantflow.devinfra.testing import bare_environment, bare_path, copy_of_repository

ROOT = Path(__file__).resolve().parents[1]


def cold_setup(warm_uv_cache: bool) -> float:
    """One `make setup` on the bare path; its seconds."""
    workdir = Path(tempfile.mkdtemp(prefix="tenantflow-cold-setup-"))
    try:
        path = bare_path(workdir / "bin")
        repository = copy_of_repository(workdir / "repository", ROOT)
        environment = bare_environment(path, workdir)
        if not warm_uv_cache:
            environment["UV_CACHE_DIR"] = str(workdir / "uv-cache")
        began = time.monotonic()
        done = subprocess.run(
            ["make", "setup"],
            cwd=repository,
            env=environment,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        seconds = time.monotonic() - began
        if done.returncode != 0:
            raise SystemExit(f"make setup failed:\n{(done.stdout + done.stderr)[-3000:]}")
        return round(seconds, 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warm-uv-cache", action="store_true", help="keep this machine's uv cache (wheels)"
    )
    args = parser.parse_args()
    runs = [cold_setup(args.warm_uv_cache) for _ in range(args.runs)]
    cache = "this machine's uv cache" if args.warm_uv_cache else "an empty uv cache"
    print(
        f"make setup with nothing but Python ({cache}): median {statistics.median(runs)} s "
        f"of {runs}"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "cold_setup.json").write_text(
        json.dumps(
            {
                "benchmark": "cold_setup",
                "uv_cache": "warm" if args.warm_uv_cache else "empty",
                "seconds": runs,
                "median_s": statistics.median(runs),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
