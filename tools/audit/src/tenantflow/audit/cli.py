"""tenantflow-audit: who changed what, when, and what was written to Intune, from the event log.

Reads Kafka directly, with the services' connection settings (KAFKA_BOOTSTRAP_SERVERS,
KAFKA_TOPIC_PREFIX, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CA_FILE), so it runs
against a managed cluster as well. Read-only by construction: it joins no consumer group and
commits no offset (``tenantflow.bus.reader``).

    tenantflow-audit timeline [--tenant ID] [--app APP] [--actor WHO] [--change ID]
                              [--since TIME] [--until TIME] [--format table|jsonl|csv]
    tenantflow-audit state [--tenant ID] [--at TIME] [--format table|json]
    tenantflow-audit verify [--tenant ID]
    tenantflow-audit rebuild --target portal --into DATABASE_URL [--compare-with DATABASE_URL]

Times are ISO 8601 (``2026-11-17T14:00:00+01:00``); without an offset they are UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any
from uuid import UUID

import msgspec
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tenantflow.audit.replay import Entry, Filters, Replay
from tenantflow.audit.trail import TenantState, assignments, documents, unfinished
from tenantflow.bus.chain import ChainVerifier
from tenantflow.bus.reader import Record
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings
from tenantflow.contracts.audit import targets
from tenantflow.contracts.envelope import H_SUBJECT


def moment(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tenantflow-audit", description=__doc__.splitlines()[0] if __doc__ else None
    )
    commands = top.add_subparsers(dest="command", required=True)

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--no-progress", action="store_true", help="no progress bar on standard error"
        )

    timeline = commands.add_parser("timeline", help="every audit event, in the log's order")
    timeline.add_argument("--tenant", type=UUID, help="one tenant's events only")
    timeline.add_argument("--app", help="one catalog app's deployment events only")
    timeline.add_argument(
        "--actor", help="a user's object id or part of their display name, or a service's name"
    )
    timeline.add_argument("--change", type=UUID, help="one change (its correlation id)")
    timeline.add_argument("--since", type=moment, help="from this time (offsets for times)")
    timeline.add_argument("--until", type=moment, help="up to this time")
    timeline.add_argument("--format", choices=["table", "jsonl", "csv"], default="table")
    common(timeline)

    state = commands.add_parser(
        "state", help="every deployment of a tenant (or of all) at a moment: desired, applied"
    )
    state.add_argument(
        "--tenant", type=UUID, help="one tenant (read from its partitions only); default: all"
    )
    state.add_argument("--at", type=moment, help="the moment; default: the end of the log")
    state.add_argument("--format", choices=["table", "json"], default="table")
    common(state)

    verify = commands.add_parser(
        "verify",
        help="the audit hash chains are whole and every requested change reached an end "
        "(exit status 1 if not)",
    )
    verify.add_argument("--tenant", type=UUID, help="one tenant only")
    common(verify)

    rebuild = commands.add_parser(
        "rebuild",
        help="re-create a service's read models from the log in an empty database, and "
        "compare them with the live one (exit status 1 if a row differs)",
    )
    rebuild.add_argument("--target", choices=["portal"], required=True)
    rebuild.add_argument(
        "--into", required=True, metavar="DATABASE_URL", help="an empty database to fill"
    )
    rebuild.add_argument(
        "--compare-with",
        metavar="DATABASE_URL",
        help="the live database: every read-model row is compared (read only)",
    )
    common(rebuild)
    return top


COLLECT_EVERY = 200_000
"""Records read between two garbage collections during a replay (see ``progress_bar``)."""


@contextmanager
def progress_bar(console: Console, shown: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar on ``console`` while the block runs; the callable moves it.

    It also paces garbage collection: a replay makes millions of short-lived objects, and
    Python's automatic collection, triggered by their count, rescanned them so often that it
    took half of a replay's time (bench/audit_replay.py: 12k events/s with it, 23k without).
    The heap as imported is frozen, automatic collection is off while the block runs, and a
    collection runs every ``COLLECT_EVERY`` records instead, so memory stays bounded."""
    gc.freeze()
    gc.disable()
    collected = 0

    def collect(read: int) -> None:
        nonlocal collected
        if read - collected >= COLLECT_EVERY:
            gc.collect()
            collected = read

    try:
        if not shown:
            yield lambda read, planned: collect(read)
            return
        with Progress(
            TextColumn("reading the log"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("read", total=None)

            def advance(read: int, planned: int | None) -> None:
                bar.update(task, completed=read, total=planned)
                collect(read)

            yield advance
    finally:
        gc.enable()
        gc.unfreeze()


async def replay(
    settings: KafkaSettings,
    filters: Filters,
    progress: bool,
    console: Console,
    on_batch: Callable[[list[Record]], None] | None = None,
) -> list[Entry]:
    """The timeline for ``filters``, with a progress bar on standard error when asked."""
    with progress_bar(console, progress) as advance:
        return await Replay(settings, filters, advance, on_batch).timeline()


async def rebuild_portal(
    args: argparse.Namespace, settings: KafkaSettings, out: IO[str], errors: Console, shown: bool
) -> int:
    """The portal's read models from the whole log (``portal_api.rebuild``), then compared."""
    # imported here: the other commands need neither the portal nor a database
    from sqlalchemy.exc import SQLAlchemyError

    from tenantflow.bus.db import create_engine
    from tenantflow.portal_api.rebuild import NotEmpty, Rebuild, compare

    into = create_engine(DatabaseSettings(url=args.into))
    live = create_engine(DatabaseSettings(url=args.compare_with)) if args.compare_with else None
    try:
        target = Rebuild(into, settings.topic_prefix)
        try:
            await target.prepare()
        except NotEmpty as exc:
            errors.print(f"not rebuilt: {exc}")
            return 2
        except SQLAlchemyError as exc:
            errors.print(f"not rebuilt: the database to fill cannot be used: {exc}")
            return 2
        read, undecodable = 0, 0
        with progress_bar(errors, shown) as advance:
            async for run in Replay(settings, on_progress=advance).runs():
                read += len(run)
                for record, why in await target.feed(run):
                    undecodable += 1
                    errors.print(
                        f"undecodable record at {record.topic}/{record.partition}@"
                        f"{record.offset}, left out: {why}"
                    )
        out.write(
            f"rebuilt the portal's read models from {read} events ({target.applied} recorded, "
            f"{undecodable} undecodable)\n"
        )
        if live is None:
            return 0
        compared, differences = await compare(live, into)
        for difference in differences:
            out.write(f"differs: {difference}\n")
        out.write(f"{compared} rows compared, {len(differences)} differ\n")
        return 1 if differences else 0
    finally:
        await into.dispose()
        if live is not None:
            await live.dispose()


async def write_timeline(
    entries: AsyncIterator[Entry], form: str, out: IO[str], console: Console
) -> None:
    """JSON Lines and CSV are written as the entries stream in; a table once all are read."""
    if form == "jsonl":
        async for entry in entries:
            out.write(json.dumps(entry.row()) + "\n")
        return
    if form == "csv":
        writer = csv.DictWriter(out, fieldnames=Entry.FIELDS)
        writer.writeheader()
        async for entry in entries:
            writer.writerow(entry.row())
        return
    rows = [entry async for entry in entries]
    table = Table(title=f"{len(rows)} events", show_lines=False)
    for column in ("time", "tenant", "event", "actor", "change", "app", "what"):
        table.add_column(column, overflow="fold")
    for entry in rows:
        table.add_row(
            entry.time.isoformat(timespec="milliseconds"),
            str(entry.tenant_id or "")[:8],
            entry.event_type,
            f"{entry.actor} ({entry.actor_name})" if entry.actor_name else entry.actor,
            str(entry.change_id or "")[:8],
            f"{entry.app} r{entry.revision}" if entry.app else "",
            entry.summary,
        )
    console.print(table)


def state_document(state: TenantState) -> dict[str, Any]:
    return {
        "tenant_id": state.tenant_id,
        "at": state.at.isoformat() if state.at else None,
        "unlinked_at": state.unlinked_at.isoformat() if state.unlinked_at else None,
        "deployments": [
            {
                "app": d.app,
                "desired": documents(d.desired),
                "desired_revision": d.desired_revision,
                "desired_change": d.desired_change,
                "applied": documents(d.applied),
                "applied_revision": d.applied_revision,
                "applied_change": d.applied_change,
                "applied_at": d.applied_at,
                "app_removed": d.app_removed,
                "kept_foreign": documents(d.kept_foreign),
                "graph_request_ids": d.graph_request_ids,
                "in_sync": d.in_sync,
            }
            for d in sorted(state.deployments.values(), key=lambda d: d.app)
        ],
    }


def _shown(raw: msgspec.Raw) -> str:
    try:
        return targets(assignments(raw))
    except ValueError as exc:
        return f"unreadable ({exc.__class__.__name__})"


def write_states(states: Sequence[TenantState], form: str, out: IO[str], console: Console) -> None:
    """One tenant's state as a document (json) or a table; several as a list or tables."""
    if form == "json":
        documents = [state_document(state) for state in states]
        whole = documents[0] if len(documents) == 1 else documents
        out.write(json.dumps(whole, indent=2) + "\n")
        return
    for state in states:
        title = f"tenant {state.tenant_id} at {state.at.isoformat() if state.at else 'the end'}"
        if state.unlinked_at:
            title += f" (unlinked at {state.unlinked_at.isoformat()})"
        table = Table(title=title)
        for column in ("app", "desired", "applied", "in Intune since", "in sync"):
            table.add_column(column, overflow="fold")
        for d in sorted(state.deployments.values(), key=lambda d: d.app):
            table.add_row(
                d.app,
                "—" if d.desired is None else f"r{d.desired_revision}: {_shown(d.desired)}",
                "—"
                if d.applied is None
                else f"r{d.applied_revision}: "
                + ("app removed" if d.app_removed else _shown(d.applied)),
                d.applied_at or "",
                "yes" if d.in_sync else "no",
            )
        console.print(table)


async def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    settings = KafkaSettings()
    # a file or a pipe gets whole lines (rich would fold them at 80 columns)
    console = Console(file=out, width=None if out.isatty() else 240)
    errors = Console(file=err, stderr=True)
    progress = not args.no_progress and err.isatty()
    if args.command == "timeline":
        filters = Filters(
            tenant=args.tenant,
            app=args.app,
            actor=args.actor,
            change=args.change,
            since=args.since,
            until=args.until,
        )
        with progress_bar(errors, progress) as advance:
            await write_timeline(
                Replay(settings, filters, advance).entries(), args.format, out, console
            )
        return 0
    if args.command == "rebuild":
        return await rebuild_portal(args, settings, out, errors, progress)
    if args.command == "state":
        with progress_bar(errors, progress) as advance:
            trail = await Replay(settings, Filters(tenant=args.tenant), advance).trail(args.at)
        if trail.malformed:
            errors.print(f"{trail.malformed} events could not be read and were left out")
        if args.tenant is not None:
            write_states([trail.state(args.tenant)], args.format, out, console)
        else:
            states = sorted(trail.tenants.values(), key=lambda state: state.tenant_id)
            write_states(states, args.format, out, console)
        return 0
    chains = ChainVerifier(settings.topic_prefix)
    subject = str(args.tenant).encode() if args.tenant else None

    def check(records: list[Record]) -> None:
        # one tenant's partitions hold others' events too, whose chains continue on partitions
        # not read: only the tenant's own chains can be checked whole
        if subject is not None:
            records = [r for r in records if (H_SUBJECT, subject) in list(r.headers or [])]
        chains.feed(records)

    entries = await replay(settings, Filters(tenant=args.tenant), progress, errors, check)
    breaks = chains.finish()
    for found in breaks:
        topic, partition, offset = found.position
        producer, tenant = found.chain
        out.write(
            f"chain broken ({found.kind}) at {topic.removeprefix(settings.topic_prefix)}/"
            f"{partition}@{offset}: {found.detail} (chain of {producer} for tenant {tenant})\n"
        )
    left = unfinished(entries)
    requested = sum(1 for e in entries if e.event_type == "deployment.change.requested")
    undecodable = [e for e in entries if e.event_type == "undecodable"]
    for entry in undecodable:
        errors.print(
            f"undecodable record at {entry.topic}/{entry.partition}@{entry.offset}: {entry.summary}"
        )
    for change in left:
        out.write(
            f"no end: change {change.change_id} (tenant {change.tenant_id}, {change.app} "
            f"r{change.revision}), requested {change.requested_at.isoformat()}, "
            f"last {change.status}\n"
        )
    out.write(
        f"{chains.checked} records in {len(chains.links)} audit chains, {len(breaks)} breaks; "
        f"{requested} changes requested, {requested - len(left)} reached an end, "
        f"{len(left)} did not; {len(undecodable)} undecodable records\n"
    )
    return 1 if left or undecodable or breaks else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args, sys.stdout, sys.stderr))
    except (KafkaError, OSError) as exc:
        # the cluster or a database cannot be reached: say so, not a traceback
        sys.stderr.write(f"tenantflow-audit: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
