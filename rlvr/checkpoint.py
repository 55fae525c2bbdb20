"""Atomic, resumable checkpoints.

Layout: RUN_DIR/checkpoints/step_000010/state.json plus the weights and optimizer state as the run's parallelism
writes them (rlvr/parallel.py):
  * one process or DDP: trainable.safetensors + optimizer.pt (rank 0's replica);
  * FSDP2: dcp/ (torch.distributed.checkpoint: one shard file per rank plus .metadata), read back by any world
    size, or by one process without a process group (`load_trainable`, `rlvr export`).
A checkpoint is written into a temporary folder and renamed into place (`os.replace` is atomic on POSIX), so a
crash or a full disk while writing leaves the previous checkpoint intact; a folder without state.json is never
picked up. Only trainable parameters are stored (the LoRA adapter, or every weight in a full fine-tune).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from rlvr.weights import load_trainable, trainable_state  # noqa: F401 (re-exported)

_STEP_DIR = re.compile(r"^step_(\d+)$")


def _single():
    from rlvr.distributed import Dist
    from rlvr.parallel import Single

    return Single(Dist(), torch.device("cpu"))


def save_checkpoint(run_dir: Path, step: int, model, optimizer, state: dict, keep: int = 2, parallel=None,
                    extra_state: dict | None = None, blobs: dict | None = None) -> Path:
    """Write checkpoint `step` (number of finished optimizer steps) and prune all but the newest `keep`.

    Under torchrun every rank calls it (FSDP ranks each write their shards); rank 0 creates the folder, writes
    state.json and renames it into place after every rank has written. `parallel`: the run's strategy (default:
    one process). `extra_state`: more JSON entries for state.json. `blobs`: {file name: object} written by rank 0
    with torch.save (pickled Python objects, e.g. the pending batch of an asynchronous run), inside the same atomic
    rename."""
    parallel = parallel or _single()
    dist = parallel.dist
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:06d}"
    tmp = None
    if dist.is_main:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step_{step:06d}.", dir=root))
    tmp = Path(dist.broadcast_object(str(tmp) if tmp else None))
    try:
        parallel.save(tmp, model, optimizer)
        dist.broadcast_object(None)  # every rank has written its part
        if dist.is_main:
            full_state = dict(state, **(extra_state or {}), step=step, torch_rng=torch.get_rng_state().tolist(),
                              parallelism=parallel.name)
            for name, obj in (blobs or {}).items():
                torch.save(obj, tmp / name)
            (tmp / "state.json").write_text(json.dumps(full_state))
            from rlvr.artifacts import share_permissions

            share_permissions(tmp)  # mkdtemp made it 0700: readable by others as the umask allows
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    finally:
        if dist.is_main and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if dist.is_main:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.broadcast_object(None)  # no rank races ahead into a folder still being renamed
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / "state.json").is_file()]
    return [p for _, p in sorted(found)]


def is_checkpoint(path: Path) -> bool:
    """A complete checkpoint folder of either layout."""
    p = Path(path)
    return (p / "state.json").is_file() and ((p / "trainable.safetensors").is_file() or (p / "dcp").is_dir())


def load_checkpoint(path: Path, model, optimizer, parallel=None) -> dict:
    """Restore trainable weights and optimizer state in place (every rank, under torchrun); return the saved state
    dict (with `step`).

    Raises ConfigError when the checkpoint was written by another layout (an FSDP2 checkpoint resumed with ddp, or
    the reverse): the fix is to resume with the parallelism that wrote it."""
    from rlvr.errors import ConfigError

    parallel = parallel or _single()
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    written = "fsdp" if (path / "dcp").is_dir() else "ddp"
    wanted = "fsdp" if parallel.sharded else "ddp"
    if written != wanted:
        raise ConfigError(f"checkpoint {path} was written with train.parallelism={written}; resume it with "
                          f"train.parallelism={written} (or convert it with `rlvr export` and start a new run)")
    parallel.load(path, model, optimizer)
    torch.set_rng_state(torch.tensor(state.pop("torch_rng"), dtype=torch.uint8))
    state.pop("parallelism", None)
    return state
