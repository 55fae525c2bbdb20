"""Data-parallel plumbing for `torchrun --nproc_per_node=N -m rlvr.cli train RECIPE` (the trainer stays launcher-blind).

The trainer holds one :class:`Dist` and calls the same methods whether it runs alone (every method is then the
identity and nothing is imported from torch.distributed) or as one of N ranks:

  * `shard(n)`: this rank's contiguous block of n items (the step's prompts; the step's micro-batches);
  * `all_gather_object` / `broadcast_object`: small Python objects (rollouts, verdicts, stats, the stop decision);
  * `merge_stats`: per-rank float dicts combined: sum, or max / min for keys ending in `_max` / `_min`;
  * `broadcast_params`: rank 0's trainable weights to every rank at start.

Gradients and weights are laid out over the ranks by rlvr/parallel.py (torch DDP or FSDP2), not here.

Backend: gloo by default (CPU). RLVR_DIST_BACKEND=nccl selects NCCL, with tensors staged through cuda:LOCAL_RANK;
that path is untested (no multi-GPU machine has run it). RLVR_DIST_TIMEOUT_MIN (default 60) is how long a rank
waits in a collective, e.g. while rank 0 runs the held-out evaluation alone.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch

from rlvr.errors import ConfigError


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when unset)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"WORLD_SIZE={raw!r}: expected a positive integer (set by torchrun)")
    return n


class Dist:
    """This process's place in the run: rank, world_size, and the collectives the trainer needs."""

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | None = None, group=None):
        self.rank, self.world_size = rank, world_size
        self.device = device or torch.device("cpu")  # where collectives' tensors live (cuda:LOCAL_RANK for NCCL)
        self.group = group  # None: the default process group

    def side_channel(self) -> "Dist":
        """A Dist over a second gloo process group of the same ranks, for object collectives that run in another
        thread at the same time as the trainer's (asynchronous GRPO: the background generation's gathers beside the
        update's gradient all-reduce). Collectives of one group must be issued in the same order on every rank;
        two groups do not share an order. Every rank must call this, in the same order. Alone: self."""
        if self.world_size == 1:
            return self
        import torch.distributed as dist

        return Dist(self.rank, self.world_size, torch.device("cpu"), group=dist.new_group(backend="gloo"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files, logs, evaluates and runs the monitor."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous block of range(n): equal blocks when n % world_size == 0, else the later ranks get
        one more."""
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    # ----------------------------------------------------------------------------------- objects

    def all_gather_object(self, obj) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] alone)."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_object(self, obj, src: int = 0):
        """Rank `src`'s `obj` on every rank."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src, group=self.group)
        return box[0]

    def merge_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """Combine every rank's `stats`: keys ending in `_max` take the maximum, `_min` the minimum, others the sum.
        A key missing on a rank (e.g. one that ran no micro-batch) is left out of that rank's share."""
        if self.world_size == 1:
            return dict(stats)
        out: dict[str, float] = {}
        for part in self.all_gather_object(stats):
            for k, v in part.items():
                if k not in out:
                    out[k] = v
                elif k.endswith("_max"):
                    out[k] = max(out[k], v)
                elif k.endswith("_min"):
                    out[k] = min(out[k], v)
                else:
                    out[k] += v
        return out

    # ----------------------------------------------------------------------------------- tensors

    @torch.no_grad()
    def broadcast_params(self, params: list[torch.Tensor], src: int = 0) -> None:
        """Copy rank `src`'s values of `params` into every rank's (in place)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        for p in params:
            t = p.data.to(self.device)
            dist.broadcast(t, src=src)
            if t is not p.data:
                p.data.copy_(t.cpu())


_DIST: Dist | None = None


def init_from_env() -> Dist:
    """The process's Dist. Under torchrun (WORLD_SIZE > 1) the default process group is created from the torchrun
    environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE) on the first call; a group someone else created is used as is.
    Alone: Dist(0, 1), nothing initialised."""
    global _DIST
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if _DIST is None or _DIST.world_size != dist.get_world_size():
            _DIST = Dist(dist.get_rank(), dist.get_world_size(), _device(dist.get_backend()))
        return _DIST
    world = env_world_size()
    if world == 1:
        return Dist()
    backend = os.environ.get("RLVR_DIST_BACKEND", "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"RLVR_DIST_BACKEND={backend!r}: expected 'gloo' (CPU) or 'nccl' (GPU)")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(minutes=float(os.environ.get("RLVR_DIST_TIMEOUT_MIN", "60"))))
    _DIST = Dist(dist.get_rank(), dist.get_world_size(), _device(backend))
    return _DIST


def _device(backend: str) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def shutdown() -> None:
    """Destroy the process group created by init_from_env (no-op when none)."""
    global _DIST
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _DIST = None


def world_size() -> int:
    """The number of ranks: WORLD_SIZE when set (torchrun), else the size of a process group someone initialised
    (e.g. torch.multiprocessing workers), else 1."""
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ and dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return env_world_size()
