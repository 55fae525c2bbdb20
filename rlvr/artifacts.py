"""What `rlvr eval` and `rlvr export` read: a trained policy from a run directory, its final adapter, a checkpoint,
or any model a recipe accepts (alias, HF folder, .gguf, hub id in the local cache).

    run dir          RUN/config.yaml + RUN/final_adapter/ (LoRA) or RUN/final_model/ (full fine-tune), or, if the
                     run did not finish, its last checkpoint
    final adapter    a peft folder (adapter_config.json); the run's config.yaml is read from its parent when there
    checkpoint       RUN/checkpoints/step_N/ (state.json + trainable.safetensors, or dcp/ from an FSDP2 run, read
                     without a process group): the policy is rebuilt as the trainer built it (LoRA or full) and
                     the trained weights are copied in
    model            anything `model:` accepts (rlvr/models.py)

The policy is loaded exactly as the trainer holds it (same base dtype, LoRA unmerged), so greedy decoding gives
the completions the run's own held-out evaluation gave.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.checkpoint import is_checkpoint
from rlvr.config import Config, load_config
from rlvr.errors import ModelError


@dataclass
class Loaded:
    """A policy ready to generate: model (peft-wrapped for LoRA runs), tokenizer, the run's Config (None for a
    plain model), what was loaded (for logs), and the base model path."""

    model: Any
    tokenizer: Any
    cfg: Config | None
    source: str
    base_path: str


def find_run(path: str | Path) -> tuple[Path | None, str]:
    """(run dir or None, kind) for a path: kind is 'run', 'adapter', 'checkpoint' or 'model'."""
    p = Path(path).expanduser()
    if p.is_dir() and (p / "config.yaml").is_file() and any((p / d).is_dir() for d in ("final_adapter", "final_model",
                                                                                         "checkpoints")):
        return p, "run"
    if p.is_dir() and is_checkpoint(p):
        return p.parent.parent if (p.parent.parent / "config.yaml").is_file() else None, "checkpoint"
    if p.is_dir() and (p / "adapter_config.json").is_file():
        return p.parent if (p.parent / "config.yaml").is_file() else None, "adapter"
    return None, "model"


def run_config(run_dir: Path) -> Config:
    """The resolved Config a run wrote to RUN/config.yaml (its run_dir and resume fields are kept as written)."""
    return load_config(run_dir / "config.yaml")


def load_trained(path: str, device: torch.device, dtype: str | None = None) -> Loaded:
    """Load the policy at `path` (see the module docstring) on `device`. `dtype` overrides the base dtype of a plain
    model (default: the run's train dtype, float32 for a plain model).

    Raises:
        ModelError: nothing loadable at `path`, a checkpoint without its run's config.yaml, or an adapter whose
            base model cannot be found.
    """
    from rlvr.build import _policy
    from rlvr.checkpoint import list_checkpoints, load_trainable
    from rlvr.hardware import resolve_dtype
    from rlvr.models import load_policy, load_tokenizer, resolve_model

    run_dir, kind = find_run(path)
    cfg = run_config(run_dir) if run_dir is not None else None
    if kind == "run":
        if (run_dir / "final_adapter").is_dir():
            path, kind = str(run_dir / "final_adapter"), "adapter"
        elif (run_dir / "final_model").is_dir():
            final = run_dir / "final_model"
            train_dtype = resolve_dtype(cfg.train.dtype, device).dtype
            return Loaded(load_policy(str(final), train_dtype, device=device), load_tokenizer(str(final)), cfg,
                          f"final model {final}", str(final))
        else:
            ckpts = list_checkpoints(run_dir)
            if not ckpts:
                raise ModelError(f"model '{path}': run directory has no final_adapter/, final_model/ or checkpoint")
            path, kind = str(ckpts[-1]), "checkpoint"
    if kind == "checkpoint":
        if cfg is None:
            raise ModelError(f"model '{path}': a checkpoint is read with its run's config.yaml "
                             f"(RUN/checkpoints/step_N/ -> RUN/config.yaml), which is missing")
        base = resolve_model(cfg.model)
        train_dtype = resolve_dtype(cfg.train.dtype, device).dtype
        model = _policy(cfg, base, train_dtype, device)
        load_trainable(Path(path), model)
        return Loaded(model.eval(), load_tokenizer(base), cfg, f"checkpoint {path}", base)
    if kind == "adapter":
        from peft import PeftModel

        meta = json.loads((Path(path) / "adapter_config.json").read_text())
        base = resolve_model(cfg.model) if cfg is not None else meta.get("base_model_name_or_path")
        if not base or not (os.path.exists(base) or cfg is not None):
            raise ModelError(f"model '{path}': the adapter's base model '{base}' is not on this machine; evaluate "
                             f"the run directory (it names the model) or export with --merge")
        base = resolve_model(base)
        train_dtype = resolve_dtype(cfg.train.dtype if cfg is not None else (dtype or "float32"), device).dtype
        model = PeftModel.from_pretrained(load_policy(base, train_dtype, device=device), path, is_trainable=False)
        if train_dtype == "float32":
            model = model.float()
        return Loaded(model.eval(), load_tokenizer(base), cfg, f"adapter {path}", base)
    base = resolve_model(str(path))
    model_dtype = resolve_dtype(dtype or "float32", device).dtype
    return Loaded(load_policy(base, model_dtype, device=device), load_tokenizer(base), None, f"model {path}", base)


def export(run_or_adapter: str, out: str | Path, merge: bool = False) -> Path:
    """Write the trained policy to `out`: the peft adapter (plus tokenizer) or, with `merge`, a plain HF folder with
    the LoRA merged into the base (safetensors weights, config.json, generation_config.json, tokenizer and chat
    template) that transformers and vLLM load without peft. A full fine-tune is always written as a plain folder.
    Atomic: written to a temporary folder, then renamed to `out`.

    Raises:
        ModelError: `out` exists, or nothing trained at `run_or_adapter`.
    """
    out = Path(out)
    if out.exists():
        raise ModelError(f"export: '{out}' already exists; choose a new folder")
    loaded = load_trained(run_or_adapter, torch.device("cpu"))
    if loaded.source.startswith("model "):
        raise ModelError(f"export: '{run_or_adapter}' is not a run directory, final adapter or checkpoint")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp", dir=out.parent))
    try:
        model = loaded.model
        is_peft = hasattr(model, "merge_and_unload")
        if is_peft and merge:
            model = model.merge_and_unload()
        model.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        meta = {"source": loaded.source, "base_model": loaded.base_path, "merged": bool(merge or not is_peft)}
        (tmp / "rlvr_export.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
