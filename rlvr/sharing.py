"""Two threads computing one ordered list of independent items (asynchronous GRPO on CPU).

When the rollout thread has generated the next batch, its core would sit idle until the next step. The trainer lends
it to whatever the main thread is computing in independent pieces: the update's micro-batches
(`rlvr.update.PolicyUpdater`) and the held-out evaluation's generation batches (`rlvr.evaluation.evaluate`).
`shared_map` is the one mechanism both use: each thread claims the next unclaimed index, results are handed back
in index order, so the caller folds them exactly as its sequential loop would.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


def shared_map(fn: Callable[[int], T], n: int, helper: Callable[[Callable[[], None]], object] | None,
               waiting: threading.Event | None = None) -> Iterator[T]:
    """Yield fn(0), ..., fn(n - 1) in order, computed by this thread and by another one together.

    Args:
        fn: computes item k. It must be the same computation whichever thread runs it (the trainer gives both
            threads `threads` torch intra-op threads), so results equal the sequential loop's.
        n: the number of items.
        helper: helper(work) runs work() on the other thread when it is free (the trainer queues it behind the
            rollout thread's collection) and returns at once; work() claims items until none is left, so a helper
            that starts late may find nothing to do. None: this thread computes every item (a plain ordered map).
        waiting: set while this thread waits for an item the other thread computes (the trainer then gives that
            thread this thread's core), cleared when it arrives.

    Each thread claims the next unclaimed index until none is left. A result that finishes before its turn is held
    until then: this thread keeps claiming while the other computes an earlier index, so up to n - 1 results may be
    held. An exception raised by fn in either thread is raised here, in order, after the other thread has stopped
    claiming; closing the generator early also stops the claims and waits for an item the other thread is
    computing (never for the helper task itself, which may not have started).
    """
    if helper is None or n <= 1:
        for k in range(n):
            yield fn(k)
        return
    cond = threading.Condition()
    state = {"next": 0, "done": {}, "helping": 0}  # helping: items the other thread is computing

    def claim(other: bool = False) -> int | None:
        with cond:
            k = state["next"]
            if k >= n:
                return None
            state["next"] = k + 1
            state["helping"] += other
            return k

    def run(k: int) -> tuple[bool, object]:
        try:
            return True, fn(k)
        except BaseException as e:  # noqa: BLE001 (re-raised on this thread, in order)
            return False, e

    def work() -> None:
        while (k := claim(other=True)) is not None:
            out = run(k)
            with cond:
                state["done"][k] = out
                state["helping"] -= 1
                cond.notify_all()

    helper(work)
    try:
        for k in range(n):
            while True:
                with cond:
                    if k in state["done"]:
                        break
                mine = claim()
                if mine is None:  # the other thread computes k: it may take this thread's core meanwhile
                    if waiting is not None:
                        waiting.set()
                    try:
                        with cond:
                            cond.wait_for(lambda k=k: k in state["done"])
                    finally:
                        if waiting is not None:
                            waiting.clear()
                    break
                out = run(mine)
                with cond:
                    state["done"][mine] = out
            with cond:
                ok, out = state["done"].pop(k)
            if not ok:
                raise out
            yield out
    finally:  # nothing more is claimed; an item the other thread is still computing is waited for
        with cond:
            state["next"] = n
            cond.wait_for(lambda: state["helping"] == 0)
