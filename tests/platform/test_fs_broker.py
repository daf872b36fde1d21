"""The embedded broker's transport (``atelierfs://``): messages through real folders with kombu."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

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


def publish(connection, queue: Queue, *bodies: str) -> None:
    producer = Producer(connection.channel(), exchange=queue.exchange, routing_key=queue.routing_key)
    for body in bodies:
        producer.publish(body, declare=[queue])


def one_at_a_time(connection):
    """A channel that holds one message at a time, as a worker with prefetch 1 and late acks."""
    channel = connection.channel()
    channel.basic_qos(prefetch_size=0, prefetch_count=1, apply_global=False)
    return channel


def assert_wakes_the_poll(connection, settle, what: str) -> None:
    """``settle`` (an ack, a reject) lets the next message in at once: polling alone would look again only
    after its 30 s interval."""
    draining = threading.Thread(target=connection.drain_events, kwargs={"timeout": 60}, daemon=True)
    draining.start()
    settle()
    draining.join(timeout=10)
    assert not draining.is_alive(), f"the {what} did not wake the poll"


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
    publish(connection, queue, "first", "second")
    held = []
    with Consumer(one_at_a_time(connection), [queue], callbacks=[lambda body, message: held.append((body, message))]):
        connection.drain_events(timeout=5)
        assert [body for body, _ in held] == ["first"]
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.2)  # at its limit: the second message waits
        assert_wakes_the_poll(connection, held[0][1].ack, "ack")
        assert [body for body, _ in held] == ["first", "second"]


def held_files(folder) -> list[str]:
    return sorted(path.name for path in (folder / "processed").iterdir())


def test_a_message_stays_on_disk_until_its_consumer_acks_it(connection, tmp_path):
    queue = a_queue()
    publish(connection, queue, "job")
    held = []
    with Consumer(connection.channel(), [queue], callbacks=[lambda body, message: held.append(message)]):
        connection.drain_events(timeout=5)
        assert [name.partition("~")[0] for name in held_files(tmp_path)] == [fs_broker.this_holder()]
        assert fs_broker.requeue_orphaned_in(tmp_path) == 0  # its holder runs: not delivered again
        held[0].ack()
    assert held_files(tmp_path) == [] and list((tmp_path / "messages").iterdir()) == []


def test_a_rejected_message_goes_back_to_its_place_in_the_queue_and_wakes_the_poll(connection, tmp_path):
    queue = a_queue()
    publish(connection, queue, "first", "second")
    got = []
    with Consumer(one_at_a_time(connection), [queue], callbacks=[lambda body, message: got.append((body, message))]):
        connection.drain_events(timeout=5)
        assert_wakes_the_poll(connection, lambda: got[0][1].reject(requeue=True), "reject")
        assert [body for body, _ in got] == ["first", "first"]  # before "second", as Redis would
        assert len(held_files(tmp_path)) == 1
        got[1][1].ack()
    assert held_files(tmp_path) == []


def test_an_ack_after_the_channel_closed_does_not_raise(connection):
    queue = a_queue()
    publish(connection, queue, "job")
    held = []
    channel = connection.channel()
    with Consumer(channel, [queue], callbacks=[lambda body, message: held.append(message)]):
        connection.drain_events(timeout=5)
    channel.close()
    held[0].ack()


CONSUMER = """
import sys, time
from kombu import Connection, Consumer, Exchange, Queue
from atelier_platform import fs_broker
fs_broker.register()
folder, name = sys.argv[1], sys.argv[2]
queue = Queue(name, Exchange(name), routing_key=name)
options = {**fs_broker.transport_options(__import__("pathlib").Path(folder)), "polling_interval": 0.01}
with Connection("atelierfs://", transport_options=options) as connection:
    with Consumer(connection.channel(), [queue], callbacks=[lambda body, message: print("took", body, flush=True)]):
        connection.drain_events(timeout=30)
        time.sleep(60)  # killed here, holding the message
"""


def test_a_message_whose_consumer_was_killed_before_acking_is_delivered_again(connection, tmp_path):
    """The embedded broker's answer to Redis's redelivery: a worker killed (SIGKILL, the out-of-memory
    killer) with a message in hand does not lose it; the next worker or the sweeper delivers it again."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    queue = a_queue()
    publish(connection, queue, "index the document")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "platform"), str(repo / "plugins")])}
    consumer = subprocess.Popen([sys.executable, "-c", CONSUMER, str(tmp_path), queue.name], stdout=subprocess.PIPE,
                                text=True, env=env)
    try:
        assert consumer.stdout.readline().strip() == "took index the document"
        assert fs_broker.requeue_orphaned_in(tmp_path) == 0  # its holder still runs
    finally:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=30)
    assert len(held_files(tmp_path)) == 1
    assert fs_broker.requeue_orphaned_in(tmp_path) == 1
    got = []
    with Consumer(connection.channel(), [queue], callbacks=[lambda body, message: (got.append(body), message.ack())]):
        connection.drain_events(timeout=5)
    assert got == ["index the document"] and held_files(tmp_path) == []


def test_messages_of_queues_consumed_without_acks_are_not_held(connection, tmp_path):
    """Celery's remote control and its replies: held, nothing would ever ack them, and after a restart
    they came back (a `celery control shutdown` shut the next worker down too)."""
    queue = a_queue()
    publish(connection, queue, "shutdown")
    got = []
    with Consumer(connection.channel(), [queue], no_ack=True, callbacks=[lambda body, message: got.append(body)]):
        connection.drain_events(timeout=5)
    assert got == ["shutdown"] and held_files(tmp_path) == []
    publish(connection, queue, "ping")
    assert connection.channel().basic_get(queue.name, no_ack=True) is not None and held_files(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux: the start of a process in clock ticks since boot")
def test_a_live_holder_still_looks_alive_after_the_wall_clock_steps(connection, tmp_path, monkeypatch):
    """NTP stepping the clock, a VM resumed: the boot time worked out from the wall clock moves, a process's
    start in clock ticks does not. Its messages must not be delivered twice."""
    import psutil

    queue = a_queue()
    publish(connection, queue, "job")
    held = []
    with Consumer(connection.channel(), [queue], callbacks=[lambda body, message: held.append(message)]):
        connection.drain_events(timeout=5)
        boot_time = psutil.boot_time()
        monkeypatch.setattr(psutil, "boot_time", lambda: boot_time + 1.5)
        if hasattr(psutil, "_pslinux"):
            monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: boot_time + 1.5)
        assert fs_broker.requeue_orphaned_in(tmp_path) == 0
        held[0].ack()
    assert held_files(tmp_path) == []


def test_a_message_rejected_and_taken_again_at_once_stays_held(connection, tmp_path, monkeypatch):
    """A reject with requeue from the pool's thread while the consumer's thread takes the message again:
    the second delivery's file must survive the first one's reject."""
    queue = a_queue()
    publish(connection, queue, "job")
    channel = one_at_a_time(connection)
    deliveries = []
    with Consumer(channel, [queue], callbacks=[lambda body, message: deliveries.append(message)]):
        connection.drain_events(timeout=5)
        restore = channel._restore

        def restored_then_taken_again(message):
            restore(message)
            deliveries.append(channel._get(queue.name))  # the consumer's thread, in between

        monkeypatch.setattr(channel, "_restore", restored_then_taken_again)
        deliveries[0].reject(requeue=True)
        assert len(held_files(tmp_path)) == 1  # the second delivery, still on disk until acked


def test_replies_no_client_read_are_forgotten_after_ten_minutes(connection, tmp_path):
    """A `celery inspect` that stopped waiting leaves the late workers' replies in a queue nobody reads."""
    reply = Queue(f"{uuid.uuid4()}{fs_broker.REPLY_QUEUE_SUFFIX}", Exchange("reply.celery.pidbox", "direct"),
                  routing_key="late-client")
    work = a_queue()
    publish(connection, reply, "pong, too late")
    publish(connection, work, "a job waiting for a worker")
    messages = tmp_path / "messages"
    assert fs_broker.forget_unread_replies_in(tmp_path) == 0  # a fresh reply may still be read
    eleven_minutes_ago = os.path.getmtime(next(messages.iterdir())) - 660
    for path in messages.iterdir():
        os.utime(path, (eleven_minutes_ago, eleven_minutes_ago))
    assert fs_broker.forget_unread_replies_in(tmp_path) == 1
    assert [path.name.endswith(f".{work.name}.msg") for path in messages.iterdir()] == [True]  # work is never forgotten


@pytest.mark.django_db
def test_the_sweeper_forgets_unread_replies_of_the_embedded_broker(atelier_config):
    from atelier_platform.config import get_config
    from atelier_platform.jobs.tasks import sweep_jobs

    atelier_config(broker_url="atelierfs://localhost//")  # on every set-up of the suite, Redis's too
    messages = Path(fs_broker.transport_options(get_config().broker_folder)["data_folder_in"])
    stale = messages / f"0_{0:020d}_{uuid.uuid4().hex}.{uuid.uuid4()}{fs_broker.REPLY_QUEUE_SUFFIX}.msg"
    stale.write_text("{}")
    os.utime(stale, (0, 0))
    assert sweep_jobs()["forgotten_replies"] == 1 and not stale.exists()


@pytest.mark.parametrize("flag", ["should_stop", "should_terminate"])
def test_a_worker_asked_to_stop_leaves_the_poll_instead_of_waiting_out_its_timeout(connection, monkeypatch, flag):
    """Celery's loop over this transport asks for 2 s at a time and sees its SIGTERM only between two calls: every
    stop of an embedded worker (Ctrl-C of `make run`) waited the rest of them out. A warm shutdown's flag is its exit
    code, 0: read as Celery reads it, by identity."""
    from celery.worker import state

    queue = a_queue()
    with Consumer(connection.channel(), [queue], callbacks=[lambda body, message: message.ack()]):
        monkeypatch.setattr(state, flag, 0)
        outcome = []

        def drain():
            try:
                connection.drain_events(timeout=60)
            except socket.timeout:
                outcome.append("gave the loop back")

        draining = threading.Thread(target=drain, daemon=True)
        draining.start()
        draining.join(timeout=10)
        assert outcome == ["gave the loop back"], "the poll waited on with the worker asked to stop"
        monkeypatch.setattr(state, flag, None)
        publish(connection, queue, "after")  # a worker not asked to stop still gets its messages
        connection.drain_events(timeout=5)
