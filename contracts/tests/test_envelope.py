"""CloudEvents binary mode: what goes on the wire and what comes back."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from tenantflow.contracts import chain, envelope
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import Envelope, EnvelopeError, UnknownEventType, decode
from tenantflow.contracts.events import GroupRemoved, TenantLinkRequested
from tenantflow.contracts.topics import TOPIC_CONFIGS, Topic

pytestmark = pytest.mark.unit

TENANT = UUID("6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10")
USER = UserActor(tenant_id=TENANT, object_id=UUID("0b6a7d3e-4c2f-4f7a-9d1e-5a8b2c3d4e5f"))
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def link_requested() -> Envelope[TenantLinkRequested]:
    data = TenantLinkRequested(tenant_id=TENANT, actor=USER, correlation_id=uuid4())
    return Envelope(data=data, source="/tenantflow/portal-api", traceparent=TRACEPARENT)


def test_binary_mode_headers_key_and_value() -> None:
    event = link_requested()
    headers = dict(event.headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"dev.tenantflow.tenant.link.requested"
    assert headers["ce_source"] == b"/tenantflow/portal-api"
    assert headers["ce_subject"] == str(TENANT).encode()
    assert headers["ce_schemaversion"] == b"1"
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"] == TRACEPARENT.encode()
    assert headers["ce_time"].endswith(b"Z")
    assert event.key == str(TENANT).encode()
    assert event.topic == "tenantflow.tenants"
    assert json.loads(event.value())["tenant_id"] == str(TENANT)


def test_round_trip() -> None:
    event = link_requested()
    decoded = decode(event.headers(), event.value())
    assert decoded == event


def test_consumers_ignore_unknown_fields() -> None:
    event = link_requested()
    body = json.loads(event.value())
    body["added_in_a_later_minor_change"] = {"nested": True}
    decoded = decode(event.headers(), json.dumps(body).encode())
    assert decoded.data == event.data


def test_producers_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        TenantLinkRequested(tenant_id=TENANT, actor=USER, correlation_id=uuid4(), email="x@y")  # type: ignore[call-arg]


def test_accept_limits_the_types_decoded() -> None:
    event = link_requested()
    with pytest.raises(UnknownEventType):
        decode(event.headers(), event.value(), accept=[GroupRemoved])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, v: ([x for x in h if x[0] != "ce_id"], v), "missing ce_id"),
        (lambda h, v: (h, b"not json"), "does not match"),
        (lambda h, v: ([*h, ("ce_subject", str(uuid4()).encode())], v), "ce_subject differs"),
        (lambda h, v: ([*h, ("ce_specversion", b"0.3")], v), "ce_specversion"),
        (lambda h, v: ([*h, ("content-type", b"text/plain")], v), "content-type"),
        (lambda h, v: ([*h, ("ce_schemaversion", b"one")], v), "not an integer"),
        (lambda h, v: ([*h, ("ce_type", b"\xff")], v), "not UTF-8"),
    ],
)
def test_malformed_messages_are_envelope_errors(mutate, message) -> None:  # type: ignore[no-untyped-def]
    event = link_requested()
    headers, value = mutate(event.headers(), event.value())
    with pytest.raises(EnvelopeError, match=message):
        decode(headers, value)


def test_unknown_version_is_not_guessed() -> None:
    event = link_requested()
    headers = [*event.headers(), (envelope.H_SCHEMAVERSION, b"2")]
    with pytest.raises(UnknownEventType):
        decode(headers, event.value())


def test_audit_topics_keep_data_forever() -> None:
    for topic in (Topic.TENANTS, Topic.DEPLOYMENTS, Topic.DEAD_LETTER):
        assert TOPIC_CONFIGS[topic].kafka_config(brokers=3)["retention.ms"] == "-1"
    assert TOPIC_CONFIGS[Topic.DIRECTORY].kafka_config(brokers=3)["retention.ms"] != "-1"
    assert TOPIC_CONFIGS[Topic.DEPLOYMENTS].replicas(brokers=1) == 1


def test_a_chained_event_carries_its_link_and_any_alteration_breaks_it() -> None:
    first = link_requested().chained(chain.GENESIS, 1)
    assert first.chain is not None
    second = link_requested().chained(first.chain.hash, 2)
    decoded = decode(second.headers(), second.value())
    assert decoded.chain == second.chain
    assert decoded.chain is not None
    assert decoded.chain.prev == first.chain.hash
    # the replay recomputes the hash from what it read: the same bytes give the same hash
    assert decoded.link_hash(decoded.chain.prev, decoded.chain.seq, second.value()) == (
        decoded.chain.hash
    )
    altered = second.value().replace(b'"kind":"user"', b'"kind":"user" ')
    assert decoded.link_hash(decoded.chain.prev, 2, altered) != decoded.chain.hash
    assert decoded.link_hash(decoded.chain.prev, 3, second.value()) != decoded.chain.hash
    assert decode(link_requested().headers(), link_requested().value()).chain is None


@pytest.mark.parametrize(
    ("header", "bad"),
    [
        ("ce_chainseq", b"0"),
        ("ce_chainseq", b"x"),
        ("ce_chainhash", b"abc"),
        ("ce_chainprev", b"Z" * 64),
    ],
)
def test_a_malformed_chain_link_is_an_envelope_error(header: str, bad: bytes) -> None:
    event = link_requested().chained(chain.GENESIS, 1)
    headers = [(name, bad if name == header else value) for name, value in event.headers()]
    with pytest.raises(EnvelopeError):
        decode(headers, event.value())
