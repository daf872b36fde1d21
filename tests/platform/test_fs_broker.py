"""The embedded broker's transport (``atelierfs://``): messages through real folders with kombu."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from atelier_platform import fs_broker

fs_broker.register()


def a_queue() -> Queue:
    # A name of its own per test: kombu keeps exchange bindings per process, across connections.
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name), routing_key=name)


@pytest.fixture
def connection(tmp_path):
    # A polling interval far longer than any wait below: only a wake-up can deliver in time.
    options = {**fs_broker.transport_options(tmp_path), "polling_interval": 30}
    with Connection("atelierfs://", transport_options=options) as connection:
        yield connection


def test_messages_arrive_in_priority_then_arrival_order(connection):
    queue = a_queue()
    producer = Producer(connection.channel(), exchange=queue.exchange, routing_key=queue.routing_key)
    for body, priority in (("late", 5), ("urgent", 0), ("later", 5)):
        producer.publish(body, priority=priority, declare=[queue])
    got = []
    with Consumer(connection.channel(), [queue], callbacks=[lambda body, message: (got.append(body), message.ack())]):
        for _ in range(3):
            connection.drain_events(timeout=5)
    assert got == ["urgent", "late", "later"]


def test_a_consumer_at_its_prefetch_limit_takes_the_next_message_as_soon_as_it_acks(connection):
    """A worker runs one task at a time (prefetch 1, late acks): its ack, not the end of a polling
    interval, lets the next message in."""
    queue = a_queue()
    producer = Producer(connection.channel(), exchange=queue.exchange, routing_key=queue.routing_key)
    for body in ("first", "second"):
        producer.publish(body, declare=[queue])
    held = []
    channel = connection.channel()
    channel.basic_qos(prefetch_size=0, prefetch_count=1, apply_global=False)
    with Consumer(channel, [queue], callbacks=[lambda body, message: held.append((body, message))]):
        connection.drain_events(timeout=5)
        assert [body for body, _ in held] == ["first"]
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.2)  # at its limit: the second message waits
        draining = threading.Thread(target=connection.drain_events, kwargs={"timeout": 60}, daemon=True)
        draining.start()  # polling alone would look again only after its 30 s interval
        held[0][1].ack()
        draining.join(timeout=10)
        assert not draining.is_alive(), "the ack did not wake the poll"
        assert [body for body, _ in held] == ["first", "second"]
