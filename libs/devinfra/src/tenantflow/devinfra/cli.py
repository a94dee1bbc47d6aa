"""`tenantflow-infra up|down|env|fetch`: local Kafka and PostgreSQL for `make run` and demos."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tenantflow.devinfra.infra import LocalInfra
from tenantflow.devinfra.kafka import check_java, obtain_kafka
from tenantflow.devinfra.processes import InfraError


def _workdir() -> Path:
    return Path(os.environ.get("TENANTFLOW_INFRA_DIR", ".local/infra")).resolve()


def up() -> None:
    workdir = _workdir()
    if LocalInfra.from_state(workdir) is not None:
        print(f"already up; `tenantflow-infra down` first ({workdir})", file=sys.stderr)
        raise SystemExit(1)
    infra = LocalInfra(
        workdir=workdir,
        kafka_port=int(os.environ.get("TENANTFLOW_INFRA_KAFKA_PORT", "0")),
        postgres_port=int(os.environ.get("TENANTFLOW_INFRA_POSTGRES_PORT", "0")),
    )
    infra.start()
    for name, value in infra.environment().items():
        print(f"{name}={value}")
    timings = infra.timings
    if timings.kafka_start_s is not None:
        print(f"# Kafka broker started in {timings.kafka_start_s:.1f} s", file=sys.stderr)
    if timings.postgres_start_s is not None:
        print(f"# PostgreSQL started in {timings.postgres_start_s:.1f} s", file=sys.stderr)


def down() -> None:
    infra = LocalInfra.from_state(_workdir())
    if infra is None:
        print("nothing to stop", file=sys.stderr)
        return
    infra.stop()
    print("stopped", file=sys.stderr)


def env() -> None:
    infra = LocalInfra.from_state(_workdir())
    if infra is None:
        raise InfraError("local infrastructure is not up: run `make infra-up`")
    for name, value in infra.environment().items():
        print(f"export {name}={value}")


def fetch() -> None:
    check_java()
    distribution = obtain_kafka()
    print(f"Kafka broker jars: {distribution.origin}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tenantflow-infra", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "env", "fetch"])
    args = parser.parse_args(argv)
    try:
        {"up": up, "down": down, "env": env, "fetch": fetch}[args.command]()
    except InfraError as exc:
        print(f"tenantflow-infra: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
