"""Start-up time of the local infrastructure: a fresh Kafka broker (KRaft, storage formatted
each time) until it logs that it started, and PostgreSQL (initdb each time) until it accepts
connections. Prints the figures and writes JSON to bench/results/.

    uv run python bench/infra_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tenantflow.devinfra.kafka import KafkaBroker, obtain_kafka
from tenantflow.devinfra.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]


def timed_start(make: type[KafkaBroker] | type[PostgresServer]) -> float:
    with tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir:
        server = make(Path(workdir), bound_to_parent=True)
        began = time.perf_counter()
        server.start()
        elapsed = time.perf_counter() - began
        server.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    obtain_kafka()  # the jars are cached by `make setup`; not part of the start time
    kafka = [timed_start(KafkaBroker) for _ in range(args.runs)]
    postgres = [timed_start(PostgresServer) for _ in range(args.runs)]
    result = {
        "benchmark": "local_infrastructure_start",
        "runs": args.runs,
        "kafka_broker_start_s": {
            "median": round(statistics.median(kafka), 2),
            "max": round(max(kafka), 2),
        },
        "postgres_start_s": {
            "median": round(statistics.median(postgres), 2),
            "max": round(max(postgres), 2),
        },
    }
    for label, key in (
        ("Kafka broker start (format + start until ready)", "kafka_broker_start_s"),
        ("PostgreSQL start (initdb + start + createdb)", "postgres_start_s"),
    ):
        figures = result[key]
        assert isinstance(figures, dict)
        print(f"{label}, {args.runs} runs: median {figures['median']} s, max {figures['max']} s")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "infra_start.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
