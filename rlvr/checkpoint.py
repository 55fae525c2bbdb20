"""Atomic, resumable checkpoints.

Layout: RUN_DIR/checkpoints/step_000010/{trainable.safetensors, optimizer.pt, state.json}. A checkpoint is written
into a temporary folder and renamed into place (`os.replace` is atomic on POSIX), so a crash or a full disk while
writing leaves the previous checkpoint intact; a folder without state.json is never picked up.
Only trainable parameters are stored (the LoRA adapter, or every weight in a full fine-tune).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_STEP_DIR = re.compile(r"^step_(\d+)$")


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, step: int, model, optimizer, state: dict, keep: int = 2) -> Path:
    """Write checkpoint `step` (number of finished optimizer steps) and prune all but the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step_{step:06d}.", dir=root))
    try:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        full_state = dict(state, step=step, torch_rng=torch.get_rng_state().tolist())
        (tmp / "state.json").write_text(json.dumps(full_state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / "state.json").is_file()]
    return [p for _, p in sorted(found)]


def load_trainable(path: Path, model) -> None:
    """Copy a checkpoint's trainable weights into `model` in place (no optimizer state, RNG untouched).

    Raises RuntimeError when the checkpoint names parameters the model does not have."""
    weights = load_file(str(Path(path) / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise RuntimeError(f"checkpoint {path} does not match the model (unknown parameters, e.g. {missing[:3]})")
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t)


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore trainable weights and optimizer state in place; return the saved state dict (with `step`)."""
    load_trainable(path, model)
    optimizer.load_state_dict(torch.load(Path(path) / "optimizer.pt", weights_only=True))
    state = json.loads((Path(path) / "state.json").read_text())
    torch.set_rng_state(torch.tensor(state.pop("torch_rng"), dtype=torch.uint8))
    return state
