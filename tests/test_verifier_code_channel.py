"""The checker's end of a job's socket, in process (no sandbox): every read and write is bounded by the deadline
(issue 23). A socketpair stands in for the child; `_worker._Child` is built around one end, as `_Child.__init__`
sets it up. Unit checks of the mechanisms that tests/test_verifier_code_attacks4.py attacks through the sandbox, in
both tiers. Of these, the out-of-band byte followed by a reply and the reply read after the deadline fail on the
code before issue 23; the others are controls (fast here; the write test would block forever there, where the
socket was blocking)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from verifiers.code import _worker


def _child_on(sock: socket.socket) -> _worker._Child:
    c = _worker._Child.__new__(_worker._Child)
    c.pid, c.fd, c.scratch, c.gone, c.locked, c._pending = -1, sock.fileno(), None, False, True, b""
    os.set_blocking(c.fd, False)     # as _Child.__init__ does
    getattr(_worker, "_oob_inline", lambda fd: None)(c.fd)
    return c


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    _worker._RBUF.pop(a.fileno(), None)
    a.close()
    b.close()


def _reply(nonce: int) -> bytes:
    return _worker._frame({"nonce": nonce, "v": ["int", 3]})


def test_a_reply_in_time_is_read(pair):
    a, b = pair
    c = _child_on(a)
    nonce, frame = c.prepare({"op": "call"})
    b.sendall(_reply(nonce))
    assert c.exchange(nonce, frame, time.monotonic() + 2)["v"] == ["int", 3]


def test_an_out_of_band_byte_is_tampering_not_a_wait(pair):
    """MSG_OOB then the reply: the byte arrives inline (SO_OOBINLINE) and breaks the frame. Before, a plain read
    skipped it and blocked, and the reply, sent after the deadline, was accepted."""
    a, b = pair
    c = _child_on(a)
    nonce, frame = c.prepare({"op": "call"})
    b.send(b"!", socket.MSG_OOB)
    b.sendall(_reply(nonce))
    t0 = time.monotonic()
    with pytest.raises(_worker.FrameError):
        c.exchange(nonce, frame, time.monotonic() + 2)
    assert time.monotonic() - t0 < 1.0


def test_a_lone_out_of_band_byte_is_at_worst_a_timeout(pair):
    a, b = pair
    c = _child_on(a)
    nonce, frame = c.prepare({"op": "call"})
    b.send(b"!", socket.MSG_OOB)
    t0 = time.monotonic()
    with pytest.raises((_worker.FrameError, _worker.ChildGone)):
        c.exchange(nonce, frame, time.monotonic() + 0.3)
    assert time.monotonic() - t0 < 1.0


def test_a_peer_that_stops_reading_cannot_block_a_write(pair):
    a, _ = pair
    c = _child_on(a)
    nonce, frame = c.prepare({"op": "call", "args": ([0] * 1_000_000,)})
    t0 = time.monotonic()
    with pytest.raises(_worker.ChildGone):
        c.exchange(nonce, frame, time.monotonic() + 0.3)
    assert time.monotonic() - t0 < 1.0 and c.gone


def test_a_reply_read_after_the_deadline_is_a_timeout(pair, monkeypatch):
    a, b = pair
    c = _child_on(a)
    nonce, frame = c.prepare({"op": "call"})
    b.sendall(_reply(nonce))       # the answer is there, but the checker reaches it only after the deadline
    real = _worker._write_until

    def slow_write(fd, data, deadline):
        real(fd, data, deadline)
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.05)

    monkeypatch.setattr(_worker, "_write_until", slow_write)
    with pytest.raises(_worker.ChildGone):
        c.exchange(nonce, frame, time.monotonic() + 0.2)


def test_silence_ends_at_the_deadline(pair):
    a, _ = pair
    c = _child_on(a)
    nonce, frame = c.prepare({"op": "call"})
    t0 = time.monotonic()
    with pytest.raises(_worker.ChildGone):
        c.exchange(nonce, frame, time.monotonic() + 0.3)
    assert 0.25 < time.monotonic() - t0 < 1.0
