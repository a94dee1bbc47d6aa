"""Prometheus metrics of a service, at GET /metrics (prometheus-client's text format).

Read from what the service already keeps, when a scrape asks, so the hot paths do no extra work:

- ``tenantflow_events_consumed_total{consumer, outcome}``: records by outcome (handled,
  duplicate, ignored, dead_lettered), per consumer group;
- ``tenantflow_events_published_total``: events the outbox relay sent to Kafka and marked;
- ``tenantflow_outbox_backlog`` and ``tenantflow_outbox_oldest_seconds``: events stored but not
  published yet, and the age of the oldest (read from the outbox table at scrape time);
- ``tenantflow_consumer_lag{consumer, topic, partition}``: records on the partition after the
  last one the consumer group handled (from the high watermark of its last fetch);
- ``tenantflow_event_delivery_seconds{consumer}`` (histogram): how old an event was when a
  consumer handled it (from its CloudEvents time, when the producer stored it): the latency
  of each hop, outbox and relay included;
- whatever else the service registers (``Metrics.count``, ``Metrics.histogram``,
  ``Metrics.graph_client``): Graph calls by method, status and throttle scope and their
  durations (consent, directory-sync, intune-writer), portal requests' durations, the
  changes the writer ended by state, how long they took from verified, and the waits its
  tenants were given (quota, Retry-After).

Every series carries ``service``. A registry per runtime (not prometheus-client's global one),
so tests can run several services in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantflow.bus.errors import is_transient

if TYPE_CHECKING:
    from tenantflow.bus.runtime import ServiceRuntime

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READ_TIMEOUT_S = 2.0
"""The most a scrape waits for PostgreSQL or Kafka."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class RuntimeCollector(Collector):
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.backlog: tuple[int, float] = (0, 0.0)
        """The outbox's unpublished events and the oldest one's age, as last read."""
        self.lags: dict[str, dict[tuple[str, int], int]] = {}
        """Each consumer group's lag per partition, as last read."""
        self.extra: list[Callable[[], Iterable[Metric]]] = []

    def collect(self) -> Iterator[Metric]:
        service = self.runtime.service
        consumed = CounterMetricFamily(
            "tenantflow_events_consumed",
            "Records consumed, by consumer group and outcome.",
            labels=["service", "consumer", "outcome"],
        )
        for consumer in self.runtime.consumers:
            for outcome, count in sorted(consumer.stats.items()):
                consumed.add_metric([service, consumer.name, str(outcome)], count)
        yield consumed
        published = CounterMetricFamily(
            "tenantflow_events_published",
            "Events the outbox relay published to Kafka.",
            labels=["service"],
        )
        published.add_metric([service], self.runtime.relay.published)
        yield published
        lag = GaugeMetricFamily(
            "tenantflow_consumer_lag",
            "Records after the last one handled, per consumer group and partition.",
            labels=["service", "consumer", "topic", "partition"],
        )
        for group, partitions in sorted(self.lags.items()):
            for (topic, partition), behind in sorted(partitions.items()):
                lag.add_metric([service, group, topic, str(partition)], behind)
        yield lag
        backlog, age = self.backlog
        for name, documentation, value in (
            ("tenantflow_outbox_backlog", "Events stored, not yet published.", backlog),
            ("tenantflow_outbox_oldest_seconds", "Age of the oldest unpublished event.", age),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=["service"])
            gauge.add_metric([service], value)
            yield gauge
        for extra in self.extra:
            yield from extra()


class Metrics:
    """A runtime's metrics: ``render`` reads the outbox, then formats every series."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = RuntimeCollector(runtime)
        self.registry.register(self.collector)
        self._histograms: dict[str, Histogram] = {}

    def count(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        counts: Mapping[Any, int],
    ) -> None:
        """Expose ``counts`` (kept by the service, such as the Graph client's answers; keys
        are tuples of label values) as the counter ``name`` with ``labels`` and ``service``."""
        service = self.runtime.service

        def family() -> Iterable[Metric]:
            counter = CounterMetricFamily(name, documentation, labels=["service", *labels])
            for values, count in sorted(counts.items()):
                counter.add_metric([service, *values], count)
            return [counter]

        self.collector.extra.append(family)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        """A histogram the service observes into; its first label is ``service`` (give the
        runtime's service as the first label value). Asked again by the same name (an app
        built twice on one runtime), the same histogram."""
        if name not in self._histograms:
            self._histograms[name] = Histogram(
                name, documentation, ["service", *labels], registry=self.registry, buckets=buckets
            )
        return self._histograms[name]

    def graph_client(self, graph: Any) -> None:
        """A Graph client's calls (its ``answers``, counted by method, status and throttle
        scope), the answers inside its JSON batches (``batch_items``), and the calls' durations
        (observed through its ``timed`` hook)."""
        self.count(
            "tenantflow_graph_calls",
            "Calls to Entra ID and Graph, by method, status and x-ms-throttle-scope.",
            ("method", "status", "throttle_scope"),
            graph.answers,
        )
        self.count(
            "tenantflow_graph_batch_items",
            "Answers inside Graph's JSON batches, by method, status and x-ms-throttle-scope.",
            ("method", "status", "throttle_scope"),
            graph.batch_items,
        )
        durations = self.histogram(
            "tenantflow_graph_call_seconds",
            "Time to Graph's answer (or the failure), by method.",
            ("method",),
        )
        service = self.runtime.service
        graph.timed = lambda method, seconds: durations.labels(service, method).observe(seconds)

    async def render(self) -> bytes:
        """Every series; what is read at scrape time (the outbox, the lag) is bounded by
        ``READ_TIMEOUT_S``, and kept as last read when PostgreSQL or Kafka does not answer:
        a scrape never hangs on them."""
        try:
            self.collector.backlog = await asyncio.wait_for(
                self.runtime.outbox_backlog(), READ_TIMEOUT_S
            )
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s: outbox backlog not read for /metrics: %r", self.runtime.service, exc)
        for consumer in self.runtime.consumers:
            with contextlib.suppress(TimeoutError):
                self.collector.lags[consumer.name] = await asyncio.wait_for(
                    consumer.offsets.lag(), READ_TIMEOUT_S
                )
        return generate_latest(self.registry)
