"""The HF engine and the shared-prompt training forward against independent computations (full forwards,
transformers' own greedy `generate`)."""

import pytest
import torch

from rlvr.forward import completion_logprobs
from rlvr.rollouts import HFEngine, SamplingParams, make_engine
from rlvr.rollouts.hf import filter_logits


def _prompts(tokenizer):
    qs = ["Calculate 3 + 4.", "Calculate 15 - 9, please, and show nothing else.", "Hi"]
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                          tokenize=False) for q in qs]


def _ids(tokenizer, texts):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _full_logprobs(model, prompt, completion):
    """log p(completion token t | prompt + completion[:t]) from one plain forward of the whole sequence."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float().log_softmax(-1)
    L = len(prompt)
    return torch.stack([logits[L - 1 + t, tok] for t, tok in enumerate(completion)])


def test_sampling_logprobs_match_full_forward(tiny_model, tokenizer):
    prompts = _ids(tokenizer, _prompts(tokenizer))
    engine = HFEngine(tiny_model, tokenizer)
    groups = engine.generate(prompts, 4, SamplingParams(max_new_tokens=12), seed=0)
    assert [g.prompt_index for g in groups] == [0, 1, 2]
    for g in groups:
        assert len(g.completions) == 4
        for c in g.completions:
            assert len(c.token_ids) == len(c.logprobs) >= 1
            assert c.finish_reason == ("stop" if c.token_ids[-1] in engine.stop_ids else "length")
            ref = _full_logprobs(tiny_model, g.prompt_ids, c.token_ids)
            assert torch.allclose(torch.tensor(c.logprobs), ref, atol=2e-5)


def test_generation_is_deterministic_given_seed(tiny_model, tokenizer):
    prompts = _ids(tokenizer, _prompts(tokenizer))
    engine = make_engine("hf", tiny_model, tokenizer)
    a = engine.generate(prompts, 3, SamplingParams(max_new_tokens=8), seed=7)
    b = engine.generate(prompts, 3, SamplingParams(max_new_tokens=8), seed=7)
    c = engine.generate(prompts, 3, SamplingParams(max_new_tokens=8), seed=8)
    toks = lambda gs: [x.token_ids for g in gs for x in g.completions]  # noqa: E731
    assert toks(a) == toks(b)
    assert toks(a) != toks(c)


def test_greedy_equals_transformers_generate(tiny_model, tokenizer):
    prompts = _ids(tokenizer, _prompts(tokenizer))
    engine = HFEngine(tiny_model, tokenizer, max_batch_prompts=2)  # also exercises chunking
    groups = engine.generate(prompts, 1, SamplingParams(temperature=0.0, max_new_tokens=10), seed=0)
    for p, g in zip(prompts, groups):
        with torch.no_grad():
            out = tiny_model.generate(torch.tensor([p]), max_new_tokens=10, do_sample=False,
                                      eos_token_id=engine.stop_ids, pad_token_id=tokenizer.pad_token_id)
        assert g.completions[0].token_ids == out[0, len(p):].tolist()


def test_stop_token_ends_completion(tiny_model, tokenizer):
    """Force the stop token to be the most likely one: every greedy completion is exactly [eos]."""
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        bias = torch.zeros(tiny_model.config.vocab_size)
        bias[eos] = 1e4
        tiny_model.lm_head.bias = torch.nn.Parameter(bias)
    try:
        groups = HFEngine(tiny_model, tokenizer).generate(_ids(tokenizer, _prompts(tokenizer)), 2,
                                                          SamplingParams(max_new_tokens=10), seed=0)
    finally:
        tiny_model.lm_head.bias = None
    for g in groups:
        for c in g.completions:
            assert c.token_ids == [eos] and c.finish_reason == "stop" and c.text == ""


def test_top_k_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, 1.0)).tolist() == [[False, False, True, True]]
    # nucleus 0.7: 0.5 < 0.7, 0.5 + 0.3 crosses it -> keep the first two
    assert torch.isinf(filter_logits(logits, 0, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, 0, 0.4)).tolist() == [[False, True, True, True]]


def test_shared_prompt_forward_equals_full_forward_values_and_gradients(tiny_model, tokenizer):
    prompts = _ids(tokenizer, _prompts(tokenizer)[:2])
    G = 3
    torch.manual_seed(1)
    comps = [torch.randint(0, 1000, (n,)).tolist() for n in (1, 5, 3, 4, 2, 6)]
    lp, mask, ent = completion_logprobs(tiny_model, prompts, comps, G, tokenizer.pad_token_id, with_entropy=True)
    assert lp.shape == mask.shape == ent.shape == (6, 6)
    assert mask.sum(-1).tolist() == [1, 5, 3, 4, 2, 6]
    for r, c in enumerate(comps):
        ref = _full_logprobs(tiny_model, prompts[r // G], c)
        assert torch.allclose(lp[r, : len(c)], ref, atol=1e-5)
    # gradients: shared-prompt loss vs sum of independent full forwards
    (lp * mask).sum().backward()
    shared = {n: p.grad.clone() for n, p in tiny_model.named_parameters()}
    tiny_model.zero_grad()
    total = 0
    for r, c in enumerate(comps):
        p = prompts[r // G]
        logits = tiny_model(torch.tensor([p + c])).logits[0].float().log_softmax(-1)
        total = total + sum(logits[len(p) - 1 + t, tok] for t, tok in enumerate(c))
    total.backward()
    for n, prm in tiny_model.named_parameters():
        assert torch.allclose(prm.grad, shared[n], atol=1e-4, rtol=1e-3), n


def test_temperature_scales_logprobs(tiny_model, tokenizer):
    prompts = _ids(tokenizer, _prompts(tokenizer)[:1])
    comps = [[10, 20, 30]]
    with torch.no_grad():
        lp2, _, _ = completion_logprobs(tiny_model, prompts, comps, 1, tokenizer.pad_token_id, temperature=2.0)
        logits = tiny_model(torch.tensor([prompts[0] + comps[0]])).logits[0].float() / 2.0
    L = len(prompts[0])
    ref = torch.stack([logits[L - 1 + t].log_softmax(-1)[tok] for t, tok in enumerate(comps[0])])
    assert torch.allclose(lp2[0], ref, atol=1e-5)


def test_unknown_engine_is_named():
    with pytest.raises(KeyError, match="hf"):
        make_engine("nope", None, None)


def test_sampling_does_not_depend_on_how_prompts_are_split(tiny_model, tokenizer):
    """Each prompt's samples are seeded from (seed, global prompt index): generating a slice with its index_offset
    (what a data-parallel rank does) or one prompt per batch gives the same completions as one call for all."""
    prompts = _ids(tokenizer, _prompts(tokenizer))
    p = SamplingParams(max_new_tokens=10)
    whole = HFEngine(tiny_model, tokenizer).generate(prompts, 4, p, seed=5)
    split = (HFEngine(tiny_model, tokenizer).generate(prompts[:1], 4, p, seed=5)
             + HFEngine(tiny_model, tokenizer).generate(prompts[1:], 4, p, seed=5, index_offset=1))
    single = HFEngine(tiny_model, tokenizer, max_batch_prompts=1).generate(prompts, 4, p, seed=5)
    toks = lambda gs: [x.token_ids for g in gs for x in g.completions]  # noqa: E731
    assert toks(split) == toks(whole) == toks(single)
    assert [g.prompt_index for g in split] == [0, 1, 2]
    assert len({tuple(t) for t in toks(whole)}) > 1  # samples of a group differ
    for a, b in zip(whole, split):
        for x, y in zip(a.completions, b.completions):
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


def test_inverse_cdf_sampling_follows_the_distribution():
    from rlvr.rollouts.hf import sample_inverse_cdf

    V = 600  # not a multiple of the 256-token block: the padded tail must never be drawn
    probs = torch.zeros(V)
    probs[[0, 255, 256, 599]] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    n = 100_000
    u = 1.0 - torch.rand(n, 2, generator=torch.Generator().manual_seed(0))
    tok = sample_inverse_cdf(probs.expand(n, V), u).squeeze(-1)
    freq = torch.bincount(tok, minlength=V).float() / n
    assert set(tok.unique().tolist()) == {0, 255, 256, 599}  # zero-probability tokens never come out
    assert freq[[0, 255, 256, 599]].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.006)  # ~4 sigma
    edge = sample_inverse_cdf(probs.expand(2, V), torch.tensor([[1.0, 1.0], [1e-12, 1e-12]]))
    assert edge.squeeze(-1).tolist() == [599, 0]


def test_shared_prefix_prefill_equals_the_full_prefill_on_the_recipes_prompts(smollm2_dir):
    """The recipe's prompts (system prompt + 3 few-shot turns, ~110 common tokens) on the real SmolLM2: prefilling
    the common prefix once and each prompt's own tokens after it gives the greedy completions and the sampled
    log-probs of the plain left-padded prefill (float32; different matmul shapes round differently by ~1e-6)."""
    from rlvr.config import load_config
    from rlvr.data import load_splits, render_prompt
    from rlvr.models import load_policy, load_tokenizer
    from rlvr.rollouts.hf import shared_prefix_length

    cfg = load_config("recipes/basic_arithmetic.yaml", ["data.eval_size=16", "data.train_size=40"])
    tok = load_tokenizer(smollm2_dir)
    model = load_policy(smollm2_dir)
    questions = load_splits(cfg.data).eval["prompt"]
    prompts = [tok(render_prompt(tok, q, cfg.data.prompt), add_special_tokens=False)["input_ids"] for q in questions]
    assert shared_prefix_length(prompts) >= 100
    on, off = HFEngine(model, tok), HFEngine(model, tok, share_prefix=False)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    a, b = on.generate(prompts, 1, greedy, seed=0), off.generate(prompts, 1, greedy, seed=0)
    assert [g.completions[0].token_ids for g in a] == [g.completions[0].token_ids for g in b]
    sampled = SamplingParams(temperature=1.0, max_new_tokens=8)
    a, b = on.generate(prompts[:4], 4, sampled, seed=3), off.generate(prompts[:4], 4, sampled, seed=3)
    for ga, gb in zip(a, b):
        for ca, cb in zip(ga.completions, gb.completions):
            assert ca.token_ids == cb.token_ids
            assert torch.allclose(torch.tensor(ca.logprobs), torch.tensor(cb.logprobs), atol=1e-4)


def test_shared_prefix_length_keeps_a_token_of_every_prompt():
    from rlvr.rollouts.hf import shared_prefix_length

    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4, 6]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the first prompt is all prefix: keep its last token
    assert shared_prefix_length([[7], [8, 9]]) == 0
    assert shared_prefix_length([]) == 0
