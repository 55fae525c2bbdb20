"""What `rlvr eval` and `rlvr export` read: a trained policy from a run directory, its final adapter, a checkpoint,
or any model a recipe accepts (alias, HF folder, .gguf, hub id in the local cache).

    run dir          RUN/config.yaml + RUN/final_adapter/ (LoRA) or RUN/final_model/ (full fine-tune), or, if the
                     run did not finish, its last checkpoint
    export           the output of `rlvr export` (rlvr_export.json + rlvr_run_config.yaml, the source run's config):
                     evaluated on the source run's own task, prompt and verifier
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
import yaml

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


EXPORT_META = "rlvr_export.json"
EXPORT_CONFIG = "rlvr_run_config.yaml"
BASE_MODEL_META = "rlvr_base_model.json"


def find_run(path: str | Path) -> tuple[Path | None, str]:
    """(run dir or None, kind) for a path: kind is 'run', 'adapter', 'checkpoint', 'export' or 'model'. For an
    export the first element is the export folder (its config is EXPORT_CONFIG, not config.yaml)."""
    p = Path(path).expanduser()
    if p.is_dir() and (p / EXPORT_META).is_file() and (p / EXPORT_CONFIG).is_file():
        return p, "export"
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
    if kind == "export":
        cfg = load_config(run_dir / EXPORT_CONFIG)
        meta = json.loads((run_dir / EXPORT_META).read_text())
        run_dir = None  # an export is not a run directory: `rlvr eval` writes to evals/<name> by default
        if meta.get("merged"):
            train_dtype = resolve_dtype(cfg.train.dtype, device).dtype
            return Loaded(load_policy(str(path), train_dtype, device=device), load_tokenizer(str(path)), cfg,
                          f"export {path} (of run {meta.get('run_dir', '?')})", str(path))
        kind = "adapter"
    else:
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
        base = cfg.model if cfg is not None else meta.get("base_model_name_or_path")
        try:
            base = resolve_model(base) if base else None
        except ModelError:
            base = None
        if not base:
            raise ModelError(f"model '{path}': the adapter's base model "
                             f"'{meta.get('base_model_name_or_path')}' is not on this machine (see "
                             f"{BASE_MODEL_META} for its content hash); evaluate the run directory or export with "
                             f"--merge")
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
        run_dir = find_run(run_or_adapter)[0]
        meta = {"source": loaded.source, "run_dir": str(run_dir) if run_dir is not None else None,
                "base_model": loaded.cfg.model if loaded.cfg is not None else loaded.base_path,
                "merged": bool(merge or not is_peft)}
        if loaded.cfg is not None:  # `rlvr eval OUT` grades the run's own task, prompt and verifier
            c = loaded.cfg
            meta["task"] = {"data": c.data.task or c.data.path, "eval_size": c.data.eval_size,
                            "few_shot": len(c.data.prompt.few_shot), "verifier": c.eval.verifier}
            (tmp / EXPORT_CONFIG).write_text(yaml.safe_dump(c.model_dump(mode="json"), sort_keys=False))
            summary = run_dir / "summary.json" if run_dir is not None else None
            if summary is not None and summary.is_file():
                meta["heldout_pass@1"] = json.loads(summary.read_text()).get("heldout_pass@1_after")
            if is_peft and not merge:
                write_portable_base(tmp, c.model)
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n")
        share_permissions(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def share_permissions(root: str | Path) -> None:
    """Give `root` (a file or folder, recursively) the permissions the user's umask grants new files: temporary
    folders (mkdtemp: 0700) and files written through temp files (0600) would otherwise stay private, so an export
    or a checkpoint could not be shared with a colleague or served by another user's process."""
    umask = os.umask(0)
    os.umask(umask)
    root = Path(root)
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if p.is_symlink():
            continue
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def write_portable_base(adapter_dir: str | Path, model_ref: str) -> dict:
    """Record the adapter's base model portably: adapter_config.json's base_model_name_or_path becomes `model_ref`
    as the recipe wrote it (an rlvr alias such as smollm2-135m-instruct, a hub id, or the folder), instead of this
    machine's cache path, and BASE_MODEL_META holds the alias or id plus the sha256 of the weights it resolves to,
    so another machine can check it loads the same base. Returns the record."""
    from rlvr.models import base_model_record

    adapter_dir = Path(adapter_dir)
    record = base_model_record(model_ref)
    cfg_path = adapter_dir / "adapter_config.json"
    if cfg_path.is_file():
        meta = json.loads(cfg_path.read_text())
        meta["base_model_name_or_path"] = record["portable_ref"]
        cfg_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (adapter_dir / BASE_MODEL_META).write_text(json.dumps(record, indent=2) + "\n")
    return record
