"""Start the local Kafka broker and PostgreSQL as `make run` does, send a record through the
broker, stop both (run by test_bare_machine.py inside the bare-machine copy)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tenantflow.devinfra.infra import LocalInfra


async def roundtrip(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("bare-machine", 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("bare-machine", b"hello")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "bare-machine", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    assert record.value == b"hello"


def main() -> None:
    workdir = Path(os.environ.get("TENANTFLOW_INFRA_DIR") or tempfile.mkdtemp())
    infra = LocalInfra(workdir=workdir, durable=False, bound_to_parent=True)
    infra.start()
    try:
        asyncio.run(roundtrip(infra.bootstrap_servers))
    finally:
        infra.stop()
    print("a record went through the broker")


if __name__ == "__main__":
    main()
