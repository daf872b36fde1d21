"""Delivery semantics an integrator relies on, against receivers that misbehave at the socket level."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from atelier_platform.webhooks import delivery
from atelier_platform.webhooks.models import DeliveryStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def raw_receiver():
    """A TCP server on 127.0.0.1 that answers each connection with ``respond(conn)``: any bytes, at any pace."""
    listeners = []

    def start(respond) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=_answer, args=(conn, respond), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"

    yield start
    for listener in listeners:
        listener.close()


def _answer(conn, respond):
    with conn:
        try:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                received = conn.recv(65536)
                if not received:
                    return  # the client hung up before sending its request
                request += received
            respond(conn)
        except OSError:
            pass  # the client gave up


@pytest.fixture
def black_hole():
    """A TCP address where connecting hangs until the client gives up, like a host's unreachable IPv6:
    a listener whose accept queue is full, so the kernel drops every further SYN."""
    holes = []

    def make(address: str, port: int) -> None:
        listener = socket.socket()
        listener.bind((address, port))
        listener.listen(0)
        filler = socket.create_connection((address, port))  # fills the queue; nothing ever accepts it
        holes.extend([listener, filler])

    yield make
    for sock in holes:
        sock.close()


def _trickle_headers_forever(conn):
    """A status line at once, then one header byte at a time, each well within any per-read timeout."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while True:
        conn.sendall(b"X")
        time.sleep(0.05)


class TestTheTimeLimitCoversConnecting:
    @pytest.mark.timeout(60, method="signal")
    def test_a_trickling_receiver_behind_a_black_holed_address_is_cut_off(
            self, emit, project, endpoint_for, raw_receiver, black_hole, resolve_as, webhook_config):
        """The watchdog fired while the first address was still connecting, when there was no socket
        to shut down; the request then went to the second address with no limit at all."""
        url = raw_receiver(_trickle_headers_forever)
        port = int(url.split(":")[2].split("/")[0])
        black_hole("127.0.0.2", port)
        resolve_as("hooks.example", ["127.0.0.2", "127.0.0.1"])
        webhook_config(webhooks_timeout_s=1)
        endpoint_for(project, f"http://hooks.example:{port}/hooks")
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        row.refresh_from_db()
        assert row.last_error == "Timed out after 1 s." and row.last_status_code is None

    @pytest.mark.timeout(60, method="signal")
    def test_a_receiver_behind_a_black_holed_address_gets_the_delivery_and_it_counts(
            self, emit, project, endpoint_for, receiver, black_hole, resolve_as, webhook_config):
        """A receiver that answered 200 was logged as timed out (and sent the event again and again),
        because the first address had used up the whole time limit before the request even started."""
        black_hole("127.0.0.2", receiver.port)
        resolve_as("hooks.example", ["127.0.0.2", "127.0.0.1"])
        webhook_config(webhooks_timeout_s=6)
        endpoint_for(project, f"http://hooks.example:{receiver.port}/hooks")
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "succeeded"
        assert len(receiver.requests) == 1
        row.refresh_from_db()
        assert row.status == DeliveryStatus.SUCCEEDED and row.last_status_code == 200


class TestAnswersAreBounded:
    """Guards (these held before): a receiver cannot hold a worker, nor fill its memory or the log."""

    @pytest.mark.timeout(60, method="signal")
    def test_a_receiver_trickling_its_answer_is_cut_off_at_the_time_limit(
            self, emit, project, endpoint_for, raw_receiver, webhook_config):
        webhook_config(webhooks_timeout_s=1)
        endpoint_for(project, raw_receiver(_trickle_headers_forever))
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        row.refresh_from_db()
        assert row.last_error == "Timed out after 1 s." and row.last_status_code is None

    @pytest.mark.timeout(60, method="signal")
    def test_a_huge_answer_is_not_read_whole(self, emit, project, endpoint_for, raw_receiver):
        size = 50 * 1024 * 1024
        sent = []

        def huge(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            chunk = b"A" * (1024 * 1024)
            try:
                for _ in range(size // len(chunk)):
                    conn.sendall(chunk)
                    sent.append(len(chunk))
            finally:
                sent.append(None)  # done: the client read it all, or hung up

        endpoint_for(project, raw_receiver(huge))
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "succeeded"
        while not sent or sent[-1] is not None:
            time.sleep(0.01)  # until the receiver noticed the hang-up
        assert sum(sent[:-1]) < size  # the client hung up after the excerpt
        row.refresh_from_db()
        assert row.last_response_excerpt == "A" * delivery.RESPONSE_EXCERPT_CHARS


class TestAnswersThatAreNotText:
    def test_a_binary_answer_is_logged_and_the_delivery_succeeds(self, emit, project, endpoint_for, raw_receiver):
        """PostgreSQL refuses NUL in text: recording the attempt crashed, so a delivered event stayed
        claimed, and the sweeper sent it again until it failed "the worker stopped"."""
        url = raw_receiver(lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nok\x00\x01\x02\x03"))
        endpoint_for(project, url)
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "succeeded"
        row.refresh_from_db()
        assert row.status == DeliveryStatus.SUCCEEDED
        assert row.last_response_excerpt == "ok\ufffd\x01\x02\x03"
        assert row.attempt_log.get().response_excerpt == row.last_response_excerpt

    def test_a_server_answering_nul_bytes_is_a_failed_attempt(self, emit, project, endpoint_for, raw_receiver):
        url = raw_receiver(lambda conn: conn.sendall(b"\x00\x00\x00 not http\r\n\r\n"))
        endpoint_for(project, url)
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        row.refresh_from_db()
        assert row.last_status_code is None and row.last_error.startswith("BadStatusLine")
        assert "\x00" not in row.last_error and row.attempt_log.get().error == row.last_error

    def test_an_error_quoting_a_huge_status_line_is_kept_short(self, emit, project, endpoint_for, raw_receiver):
        """http.client quotes a bad status line whole (up to 64 KiB) in its error; each attempt kept it all."""
        url = raw_receiver(lambda conn: conn.sendall(b"X" * 60_000 + b"\r\n\r\n"))
        endpoint_for(project, url)
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        row.refresh_from_db()
        assert row.last_error.startswith("BadStatusLine") and len(row.last_error) <= delivery.ERROR_CHARS
        assert len(row.attempt_log.get().error) <= delivery.ERROR_CHARS
