"""Held-out evaluation on a split training never sees: greedy pass@1, and pass@k when k samples are drawn.

Verdicts come from `rlvr.scoring.score` with the training reward's item shape (completion, reference, prompt),
and a completion counts as solved when `rlvr.scoring.passed` says so (`Verdict.passed`; for the code verifier: all
tests pass), so training, evaluation and the monitor agree on what "correct" means.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlvr.rollouts import RolloutEngine, SamplingParams
from rlvr.scoring import DEFAULT_TIMEOUT_S, make_items, pass_at_k, passed, score


def evaluate(engine: RolloutEngine, prompt_ids: list[list[int]], references: list, verifier,
             max_new_tokens: int, batch_size: int = 16, out_path: Path | None = None, *,
             prompts: list[str] | None = None, samples: int = 1, temperature: float = 1.0, seed: int = 0,
             timeout_s: float | None = DEFAULT_TIMEOUT_S, progress: bool = False,
             keep_completions: bool = False, map_batches=None) -> dict:
    """Greedy-decode each held-out prompt once (`batch_size` prompts per generate call) and verify it; with
    `samples` = k > 1, also sample k completions per prompt at `temperature` (seeded by `seed`).

    Args:
        prompts: the question text of each prompt, passed to the verifier (None: no prompt; avoid).
        progress: show a progress bar over the generation batches (tqdm).
        keep_completions: also return the greedy completions' texts as "completions" ([n] str).
        map_batches: map_batches(fn, n) yields fn(0), ..., fn(n - 1) in order, where fn(k) generates batch k; the
            trainer passes rlvr.sharing.shared_map so that an idle rollout thread generates some of the batches
            (the batches, hence the completions, are the same). None: this thread generates them in order.
    Returns:
        {"pass@1": greedy pass@1 in [0, 1], "correct": int, "n": int, "greedy_passed": [n] bool per prompt (the
        monitor's paired held-out test), "extracted_rate", "error_rate",
        "timeout_rate", "completion_tokens", "tokens_per_s" (completion tokens over the wall-clock seconds of
        generation, all passes)}; with k > 1 also "samples": k, "pass@1_sampled" and "pass@j" for j in
        `pass_k_values(k)` (means over prompts of the unbiased estimator with n = k samples, Chen et al. 2021,
        arXiv 2107.03374 eq. 1). When `out_path` is
        given, every completion and verdict is written there as JSON lines.
    """
    if not prompt_ids:
        return {"pass@1": float("nan"), "correct": 0, "n": 0, "extracted_rate": float("nan")}
    prompts = list(prompts) if prompts is not None else [None] * len(prompt_ids)
    clock = {"tokens": 0, "seconds": 0.0}
    bar = _bar(len(prompt_ids) * (2 if samples > 1 else 1), progress)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    texts = _generate(engine, prompt_ids, 1, greedy, batch_size, 0, clock, bar, map_batches)
    verdicts = score(verifier, make_items(texts, references, prompts), 1, timeout_s)
    ok = [passed(v) for v in verdicts]
    n = len(texts)
    out = {"pass@1": sum(ok) / n, "correct": sum(ok), "n": n, "greedy_passed": ok,
           "extracted_rate": sum(v.answer_class is not None for v in verdicts) / n,
           "error_rate": sum(v.error is not None and not v.error.startswith("timeout") for v in verdicts) / n,
           "timeout_rate": sum(bool(v.error) and v.error.startswith("timeout") for v in verdicts) / n}
    if keep_completions:
        out["completions"] = texts
    if samples > 1:
        params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
        s_texts = _generate(engine, prompt_ids, samples, params, batch_size, seed, clock, bar, map_batches)
    bar.close()
    out.update({"completion_tokens": clock["tokens"],
                "tokens_per_s": clock["tokens"] / clock["seconds"] if clock["seconds"] else float("nan")})
    rows = [{"sample": "greedy", "prompt_index": i, "completion": t, "reference": r, "score": v.score,
             "passed": p, "answer_class": v.answer_class, "error": v.error}
            for i, (t, r, v, p) in enumerate(zip(texts, references, verdicts, ok))]
    if samples > 1:
        rep = lambda xs: [x for x in xs for _ in range(samples)]  # noqa: E731
        s_verdicts = score(verifier, make_items(s_texts, rep(references), rep(prompts)), samples, timeout_s)
        s_ok = [passed(v) for v in s_verdicts]
        per_prompt = [sum(s_ok[i * samples:(i + 1) * samples]) for i in range(n)]
        out.update({"samples": samples, "pass@1_sampled": sum(pass_at_k(samples, c, 1) for c in per_prompt) / n})
        for k in pass_k_values(samples):
            out[f"pass@{k}"] = sum(pass_at_k(samples, c, k) for c in per_prompt) / n
        rows += [{"sample": j, "prompt_index": i, "completion": s_texts[i * samples + j], "reference": references[i],
                  "score": s_verdicts[i * samples + j].score, "passed": s_ok[i * samples + j],
                  "answer_class": s_verdicts[i * samples + j].answer_class, "error": s_verdicts[i * samples + j].error}
                 for i in range(n) for j in range(samples)]
    if out_path is not None:
        with open(out_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return out


def pass_k_values(samples: int) -> list[int]:
    """The k > 1 reported for `samples` completions per prompt: powers of two below it, and `samples` itself."""
    return sorted({2 ** i for i in range(1, samples.bit_length()) if 2 ** i < samples} | {samples}) if samples > 1 else []


def _generate(engine, prompt_ids, n, params, batch_size, seed, clock, bar, map_batches=None) -> list[str]:
    """Group-major texts: n per prompt, `batch_size` prompts per generate call (each call seeded by its prompts'
    indices, so a batch's completions do not depend on which thread or in which order it ran). Adds completion
    tokens and wall-clock generation seconds to `clock`."""
    starts = range(0, len(prompt_ids), batch_size)

    def one(k: int):
        s = starts[k]
        return engine.generate(prompt_ids[s:s + batch_size], n, params, seed=seed, index_offset=s)

    texts = []
    t0 = time.perf_counter()
    for groups in (map_batches or _in_order)(one, len(starts)):
        for g in groups:
            for c in g.completions:
                texts.append(c.text)
                clock["tokens"] += len(c.token_ids)
        bar.update(len(groups))
    clock["seconds"] += time.perf_counter() - t0
    return texts


def _in_order(fn, n: int):
    return (fn(k) for k in range(n))


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="eval", unit="prompt", disable=not enabled, dynamic_ncols=True)


def evaluate_model(model: str, *, recipe: str | None = None, data: str | None = None, n: int | None = None,
                   verifier: str | None = None, samples: int | None = None, temperature: float | None = None,
                   engine: str = "auto", device: str = "auto", out: str | None = None, max_new_tokens: int | None = None,
                   batch_size: int | None = None, timeout_s: float | None = None, progress: bool = True,
                   overwrite: bool = False) -> dict:
    """`rlvr eval`: evaluate any model the recipes accept, a run directory, its final adapter or a checkpoint.

    Settings come from, in order: the arguments; the recipe (`recipe`); the run's own config.yaml when `model` is a
    run (so by default a run is re-evaluated on its own held-out split, prompt and verifier, with the engine its
    evaluation used: greedy completions and pass@1 equal summary.json's); the defaults. `data` is a reasoning-gym
    task, a file or `humaneval`; `n` caps the problems (files: every row by default).

    A plain model (no run behind it) needs `recipe` or `data`: it has no task of its own. An `rlvr export` folder
    is graded on its source run's task (the run's config travels in the export).

    Writes OUT/eval.jsonl (every completion and verdict) and OUT/eval_summary.json; returns the summary. OUT
    defaults to RUN/eval (runs) or evals/<model name>, with -2, -3, ... appended when that folder already holds an
    evaluation; an explicit `out` that holds files is refused unless `overwrite`.

    Raises:
        UserError subclasses (ConfigError, DataError, ModelError): bad input, each naming the flag and the fix.
    """
    from rlvr.artifacts import find_run, load_trained
    from rlvr.build import _engine
    from rlvr.config import DataConfig, load_config
    from rlvr.data import heldout_rows, render_prompt
    from rlvr.errors import ConfigError
    from rlvr.hardware import resolve_device, resolve_dtype
    from rlvr.rollouts import make_engine, resolve_engine_name

    t_start = time.perf_counter()
    run_dir, kind = find_run(model)
    if kind == "export":
        run_dir = None  # an export folder is not a run: results go to evals/<name>
    out_dir = _out_dir(out, overwrite, run_dir, model)  # refused before anything loads
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise ConfigError(str(e).replace("train.device", "--device")) from None
    loaded = load_trained(model, dev)
    if recipe is None and loaded.cfg is None and data is None:
        raise ConfigError(f"'{model}' is a plain model with no run behind it, so it has no task of its own; say what "
                          f"to grade it on with --recipe RECIPE (its held-out split, prompt and verifier) or --data "
                          f"TASK_OR_FILE")
    cfg = load_config(recipe) if recipe is not None else (loaded.cfg or load_config(None))
    task_source = (f"recipe {recipe}" if recipe is not None else
                   f"the run's own config ({loaded.source})" if loaded.cfg is not None else "the default recipe")
    e = cfg.eval
    file_source = False
    if data is not None:
        file_source = data == "humaneval" or Path(data).expanduser().exists() or "." in Path(data).name
        dc = (DataConfig(task=None, path=data, prompt=cfg.data.prompt) if file_source
              else DataConfig(task=data, task_config={}, prompt=cfg.data.prompt))
    else:
        dc = cfg.eval.data.model_copy(update={"prompt": cfg.data.prompt}) if cfg.eval.data is not None else cfg.data
    rows = heldout_rows(dc, n if n is not None else (0 if file_source else None))
    if not rows:
        raise ConfigError(f"--data {data or dc.task or dc.path}: no problems to evaluate (--n {n})")
    verifier_name = verifier or e.verifier
    from verifiers import get_verifier

    try:
        ver = get_verifier(verifier_name)
    except KeyError as err:
        raise ConfigError(f"--verifier '{verifier_name}': {err.args[0] if err.args else err}") from None
    k = samples if samples is not None else e.samples
    if k < 1:
        raise ConfigError(f"--samples {k}: must be >= 1")

    # the engine: the run's own evaluation rule for runs (bit-for-bit the same greedy completions), else the
    # machine's rollout engine (vLLM where installed)
    name = resolve_engine_name(engine if engine != "auto" else cfg.rollout.engine)
    train_p = resolve_dtype(cfg.train.dtype, dev)
    rollout_p = resolve_dtype(cfg.rollout.dtype, dev)
    if engine == "auto" and run_dir is not None and name == "vllm" and rollout_p.dtype != train_p.dtype:
        name = "hf"  # as the run's eval.engine=auto did: a bf16 copy of an fp32 policy would score a rounded policy
    if name == "vllm":
        _, eng = _engine(cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"engine": "vllm"})}),
                         loaded.model, loaded.tokenizer, rollout_p)
    else:
        eng = make_engine("hf", loaded.model, loaded.tokenizer)
    tok = loaded.tokenizer
    prompt_ids = [tok(render_prompt(tok, r["prompt"], dc.prompt), add_special_tokens=False)["input_ids"] for r in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        res = evaluate(eng, prompt_ids, [r["reference"] for r in rows], ver,
                       max_new_tokens or e.max_new_tokens or cfg.sampling.max_new_tokens, batch_size or e.batch_size,
                       out_dir / "eval.jsonl", prompts=[r["prompt"] for r in rows], samples=k,
                       temperature=temperature if temperature is not None else e.temperature,
                       seed=cfg.seed, timeout_s=timeout_s if timeout_s is not None else e.timeout_s, progress=progress)
    finally:
        getattr(eng, "close", lambda: None)()
    summary = {"model": str(model), "loaded": loaded.source, "data": data or dc.task or dc.path,
               "task_source": "--data" if data is not None else task_source,
               "prompt": f"{len(dc.prompt.few_shot)}-shot chat, user turn {dc.prompt.user_template!r}", "n": res["n"],
               "verifier": verifier_name, "samples": k, "engine": name, "device": str(dev),
               "dtype": train_p.dtype if name == "hf" else rollout_p.dtype, **res,
               "verifiers": {verifier_name: {"error_rate": res["error_rate"], "timeout_rate": res["timeout_rate"]}},
               "wall_seconds": time.perf_counter() - t_start, "out": str(out_dir)}
    (out_dir / "eval_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _out_dir(out: str | None, overwrite: bool, run_dir, model) -> Path:
    """Where `rlvr eval` writes: nothing already there is replaced unless asked (ConfigError otherwise)."""
    from rlvr.errors import ConfigError

    if out:
        p = Path(out)
        if p.exists() and (not p.is_dir() or any(p.iterdir())) and not overwrite:
            raise ConfigError(f"--out '{p}' already exists and holds files; choose a new folder or pass --overwrite")
        return p
    base = run_dir / "eval" if run_dir is not None else Path("evals") / Path(str(model).rstrip("/")).name
    return next_free(base)


def next_free(base: Path) -> Path:
    """`base` if it does not exist or is empty, else the first of base-2, base-3, ... that is (Lightning's
    version_N habit: a second evaluation never replaces the first)."""
    p, n = base, 1
    while p.exists() and (not p.is_dir() or any(p.iterdir())):
        n += 1
        p = base.with_name(f"{base.name}-{n}")
    return p
