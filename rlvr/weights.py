"""Trainable weights in and out of a model, independent of the run's layout: what a checkpoint stores
(rlvr/checkpoint.py) and each parallelism writes and reads (rlvr/parallel.py). Imports nothing else of rlvr, so the
two share it without importing each other."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(path: Path, model) -> None:
    """Copy a checkpoint's trainable weights into the plain (unsharded) `model` in place: no optimizer state, RNG
    untouched, no process group needed (an FSDP2 checkpoint is read with torch.distributed.checkpoint's no-dist
    mode, whatever world size wrote it).

    Raises RuntimeError when the checkpoint names parameters the model does not have, or lacks ones it has."""
    path = Path(path)
    params = dict(model.named_parameters())
    if (path / "dcp").is_dir():
        import torch.distributed.checkpoint as dcp

        wanted = trainable_state(model)
        saved = dcp.FileSystemReader(str(path / "dcp")).read_metadata().state_dict_metadata
        unknown = [k for k in saved if k.startswith("model.") and k[len("model."):] not in wanted]
        missing = [n for n in wanted if f"model.{n}" not in saved]
        if unknown or missing:
            raise RuntimeError(f"checkpoint {path} does not match the model (unknown: {unknown[:3]}, "
                               f"missing: {missing[:3]})")
        box = {"model": wanted}
        dcp.load(box, checkpoint_id=str(path / "dcp"), no_dist=True)
        weights = box["model"]
    else:
        weights = load_file(str(path / "trainable.safetensors"))
        missing = [n for n in weights if n not in params]
        if missing:
            raise RuntimeError(f"checkpoint {path} does not match the model (unknown parameters, e.g. {missing[:3]})")
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t)
