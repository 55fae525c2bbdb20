"""Persistent helper processes with a hard per-request deadline.

A worker is ``python -m <module>`` speaking JSON lines: it prints ``{"ready": true}`` once, then
answers each request line with one reply line. A request that does not come back within its
deadline gets the worker killed (and a fresh one is started on the next call), so the deadline
holds from any thread, without ``signal.alarm``. Workers are plain subprocesses rather than
``multiprocessing`` children so that they never re-import the caller's ``__main__`` script.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
import weakref

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerError(RuntimeError):
    """The worker process died, failed to start, or sent an unreadable reply."""


class _Worker:
    def __init__(self, module: str, startup_timeout_s: float) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self._replies: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._pump, name=f"{module}-reader", daemon=True).start()
        try:
            hello = self._read(startup_timeout_s)
        except TimeoutError:
            self.kill()
            raise WorkerError(f"worker {module} did not start within {startup_timeout_s}s") from None
        if not hello.get("ready"):
            self.kill()
            raise WorkerError(f"worker {module} sent {hello!r} instead of a ready message")

    def _pump(self) -> None:
        with self.proc.stdout:  # closed here, by its only reader, once the worker is gone
            for line in self.proc.stdout:
                self._replies.put(line)
        self._replies.put(None)

    def _read(self, timeout_s: float) -> dict:
        try:
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no reply within {timeout_s}s") from None
        if line is None:
            raise WorkerError(f"worker exited with code {self.proc.wait()}")
        try:
            return json.loads(line)
        except ValueError:
            raise WorkerError(f"unreadable worker reply: {line[:200]!r}") from None

    def request(self, payload: dict, timeout_s: float) -> dict:
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise WorkerError(f"worker is gone: {exc}") from None
        return self._read(timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        try:
            self.proc.stdin.close()
        except OSError:  # unflushed data to a dead process
            pass


class WorkerPool:
    """Thread-safe pool of workers running ``python -m module``, started on demand.

    Each concurrent :meth:`call` uses its own worker; idle workers are kept for reuse.

    Args:
        module: importable module whose ``__main__`` implements the JSON-lines protocol.
        startup_timeout_s: seconds allowed for a new worker to report ready (not counted
            against request deadlines).
    """

    def __init__(self, module: str, startup_timeout_s: float = 60.0) -> None:
        self.module = module
        self.startup_timeout_s = startup_timeout_s
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        _POOLS.add(self)

    def _take_idle(self) -> list[_Worker]:
        """Under the lock: the idle list, emptied if this process is a fork (those are the parent's)."""
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        return self._idle

    def call(self, payload: dict, timeout_s: float) -> dict:
        """Send ``payload`` (JSON-serialisable) and return the worker's reply.

        Raises:
            TimeoutError: no reply within ``timeout_s`` seconds; the worker was killed.
            WorkerError: the worker could not be started or died.
        """
        with self._lock:
            idle = self._take_idle()
            worker = idle.pop() if idle else None
        if worker is None:
            worker = _Worker(self.module, self.startup_timeout_s)
        try:
            reply = worker.request(payload, timeout_s)
        except BaseException:
            worker.kill()
            raise
        with self._lock:
            self._take_idle().append(worker)
        return reply

    def close(self) -> None:
        """Kill the idle workers. The pool stays usable and restarts workers on demand."""
        with self._lock:
            idle, self._idle = self._take_idle(), []
        for worker in idle:
            worker.kill()


_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
