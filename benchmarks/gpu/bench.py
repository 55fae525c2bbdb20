"""The GPU check (issue 12, item 4): correctness CPU vs CUDA, then rlvr (fsdp, ddp) and TRL's GRPOTrainer side by side.

    bash benchmarks/gpu/run.sh                 # on the GPU machine (one H200): < 8 minutes
    bash benchmarks/gpu/run.sh --cpu --tiny    # on a CPU, the same code paths at toy sizes (< 2 minutes)

What it does, each part in its own process (so peak memory is that process's and one failure does not end the rest):

  check      the same 2 GRPO steps from the same tiny fp32 model (Qwen2 layout, 2 layers) on the reference (CPU,
             train.parallelism=ddp, i.e. the plain module at world size 1) and on each candidate (CUDA ddp and CUDA
             fsdp on a GPU; CPU fsdp with --cpu). Every candidate trains on the very batch the reference sampled, so
             the comparison is of the training computation; loss, entropy, gradient norm, the whole gradient vector
             and the parameters after the 2 steps are compared against the tolerances in TOLERANCES (fp32; TF32
             off). Whether each candidate's own engine sampled the same tokens is reported too (not a pass/fail:
             one fp32 rounding difference at a sampling boundary changes a token).
  rlvr_fsdp  rlvr's trainer, train.parallelism=fsdp (FSDP2 over a 1-process group: fp32 master weights and AdamW
             state, bf16 compute), HF engine, on a random-init policy of Qwen2.5-1.5B's shape with SmolLM2's
             tokenizer and vocabulary (49152), P=16 prompts x G=8, prompts of exactly 256 tokens, completions forced
             to 512 tokens (the engine's stop set is emptied: a random model rarely emits EOS, and this way every
             step does the same work), full fine-tune.
  rlvr_ddp   the same with train.parallelism=ddp (world size 1: the plain module, bf16 weights and AdamW state).
  trl        TRL's GRPOTrainer on the same model, batch and lengths (HF generate, min_new_tokens = max = 512; bf16
             weights as rlvr_ddp; gradient checkpointing off as in rlvr; per-device batch = rlvr's micro-batch,
             gradient accumulation over the step's 16 prompts, so one generation and one optimizer step per step).

Measured per run (median over the steps after the first, which pays the warm-up): s/step and steps/s, rollout tokens/s
(generated tokens / generation time), training tokens/s (P*G*(prompt + completion) / time of the update phase),
MFU of forward+backward and of the whole update phase, peak GPU memory (torch.cuda.max_memory_allocated /
reserved). FLOPs are counted as NVIDIA NeMo RL's performance summary counts them (`flops_per_step` below, README.md).

Output: one JSON and one markdown table named after the device (benchmarks/results/gpu/gpu_check_<device>.json/.md
by default; --out elsewhere; --tiny runs default to a temporary folder so the committed results stay GPU results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_k, "1")

TOKENIZER_DIR = HERE / "tokenizer"  # SmolLM2-135M-Instruct's tokenizer (3.4 MB), saved by rlvr.models.load_tokenizer
SYSTEM = "You are a helpful assistant."

# model shapes: Qwen2.5-1.5B's (config.json of Qwen/Qwen2.5-1.5B: hidden 1536, 28 layers, 12 heads, 2 KV heads,
# intermediate 8960, tied embeddings), with SmolLM2's vocabulary instead of Qwen's 151936
SHAPES = {
    "qwen2.5-1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         intermediate_size=8960),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128),
}
# P prompts x G completions, prompt and completion lengths in tokens, groups per micro-batch
BATCHES = {
    "full": dict(P=16, G=8, prompt_len=256, completion_len=512, micro_batch_groups=2),
    "tiny": dict(P=4, G=4, prompt_len=40, completion_len=24, micro_batch_groups=2),
}
CHECK = dict(P=4, G=4, prompt_len=40, completion_len=16, micro_batch_groups=2, steps=2, lr=1e-4)
LR = 1e-6  # measurement runs: the update must happen, its size does not matter
# per-run wall-clock caps, seconds (also bounded by --limit-s): a hang costs one run, not the device call
CHILD_TIMEOUT_S = {"check": 150, "rlvr_fsdp": 240, "rlvr_ddp": 240, "rlvr_async": 240, "trl": 300}

# fp32 tolerances of the correctness check. Relative errors are ||x - ref|| / ||ref||; METHOD.md (device README):
# fp32 arithmetic lands far under 1e-3. The GRPO loss at ratio 1 is ~0 (advantages sum to 0 per group), so it gets an
# absolute bound scaled by the loss's own size.
TOLERANCES = {
    "loss_abs": 1e-5,  # |loss - loss_ref| <= loss_abs * max(1, |loss_ref|)
    "entropy_rel": 1e-5,
    "grad_norm_rel": 1e-4,
    "grad_rel_l2": 1e-4,  # the whole gradient vector of each step
    "param_update_rel_l2": 1e-3,  # theta_2 - theta_ref_2 against theta_ref_2 - theta_0 (the size of 2 AdamW steps)
}

# Peak dense bf16 rate used for MFU: NeMo RL's THEORETICAL_TFLOPS for the H100 SXM (1979 / 2 = 989.5 TFLOP/s,
# nemo_rl/utils/flops_tracker.py); the H200 SXM has the same datasheet rate (device README, H200.md). The matrix rate
# measured on this workplace's H200 (788 TFLOP/s on an 8192^3 bf16 matmul, KINDS.md) is reported beside it.
PEAK_TFLOPS = {"bfloat16": 989.5, "float32": 66.9}
MEASURED_MATMUL_TFLOPS_H200 = 788.0

# What the GPU machine has (KINDS.md, "Python packages already there", read 2026-11-17); --emulate-gpu-site builds a
# site folder of only these plus benchmarks/gpu/wheels.txt from this machine's installed packages.
GPU_MACHINE_PACKAGES = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings
cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite
lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas
nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy
seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split()

# one-token English words (with their leading space) to pad prompts to an exact length
_WORDS = (" the of and to in is that for it as was with be by on not he this are or his from at which but have an "
          "they you were her she there one all we their can has been more if will would so no what up out about who "
          "them some could him into its then two when time").split(" ")[1:]


# ---------------------------------------------------------------------------------------------- FLOPs

def flops_per_step(shape: dict, vocab: int, P: int, G: int, prompt_len: int, completion_len: int) -> dict:
    """Training FLOPs (forward + backward = 3 x forward, 2 FLOPs per multiply-add) of one step's batch.

    `nominal` is NeMo RL's count: nemo_rl/utils/flops_formulas.py `qwen2()` (NVIDIA-NeMo/RL, commit 0126d86), applied
    per sequence by nemo_rl/utils/flops_tracker.py `FLOPTracker.track_batch` (each sample counted with its own
    prompt + completion length), the formula that tracker picks for a Qwen2Config:
        3*2*L*s*h^2*(3 + s/h + 1)   attention: QKV (counted as 3 h^2, as that formula does), causal scores (s^2/2
                                    pairs, 2 matmuls), output projection
      + 3*2*L*s*h*3*f               gated MLP
      + 3*2*s*h*V                   LM head
    `executed` counts the same per-token and per-query-key-pair costs on what rlvr's training forward actually runs
    (rlvr/forward.py): each group's prompt once (LM head on its last position only), then the G completions' first
    c-1 tokens on top of the repeated prompt KV cache (attending to p + their own causal prefix). TRL runs every
    sequence in full, so its work is the nominal count. `*_gqa` recount QKV as h^2 (1 + 2 kv/heads), the projection
    sizes of a grouped-query model, to show how much NeMo's qwen2 formula adds for GQA.
    """
    L, h, f = shape["num_hidden_layers"], shape["hidden_size"], shape["intermediate_size"]
    kv_ratio = shape["num_key_value_heads"] / shape["num_attention_heads"]

    def counts(qkv: float) -> tuple[float, float, float]:
        per_token = 3 * 2 * L * h * h * (qkv + 1) + 3 * 2 * L * h * 3 * f  # attention projections + MLP
        per_vocab = 3 * 2 * h * vocab
        per_pair = 3 * 2 * 2 * L * h  # QK^T and AV: 2 matmuls x 2 FLOPs x h per (query, key) pair
        return per_token, per_vocab, per_pair

    out = {}
    for tag, qkv in (("", 3.0), ("_gqa", 1.0 + 2 * kv_ratio)):
        tok, voc, pair = counts(qkv)
        s, p, c = prompt_len + completion_len, prompt_len, completion_len
        nominal = P * G * ((tok + voc) * s + pair * s * s / 2)
        prompt_pass = (tok * p + voc * 1 + pair * p * p / 2) * P
        comp_pass = (tok * (c - 1) + voc * (c - 1) + pair * ((c - 1) * p + (c - 1) ** 2 / 2)) * P * G
        out[f"nominal{tag}"] = nominal
        out[f"executed{tag}"] = prompt_pass + comp_pass
    # the NeMo formula itself, written out as in its source, equals the nominal count
    s = prompt_len + completion_len
    nemo = (3 * 2 * L * s * h * h * ((2 + 1) + s / h * 2 * 0.5 + 1) + 3 * 2 * L * s * h * (1 + 2) * f
            + 3 * 2 * s * h * vocab) * P * G
    assert abs(nemo - out["nominal"]) <= 1e-9 * nemo, (nemo, out["nominal"])
    return out


# ---------------------------------------------------------------------------------------------- inputs

def load_bench_tokenizer():
    """SmolLM2's tokenizer from benchmarks/gpu/tokenizer (saved by transformers 5.19). Should an older transformers
    not know its tokenizer_config's class, the fast tokenizer is rebuilt from tokenizer.json with the same specials."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    except Exception as e:  # noqa: BLE001 - any loader failure gets the explicit fallback
        from transformers import PreTrainedTokenizerFast

        print(f"gpu check: AutoTokenizer failed ({type(e).__name__}: {e}); building PreTrainedTokenizerFast",
              file=sys.stderr)
        conf = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
        tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_DIR / "tokenizer.json"),
                                      **{k: conf[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")})
        tok.chat_template = (TOKENIZER_DIR / "chat_template.jinja").read_text()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def render(tok, question: str) -> str:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def exact_prompts(tok, n: int, length: int, seed: int = 0) -> list[dict]:
    """n rows {prompt, reference} whose chat-rendered prompt (rlvr's render_prompt with data.prompt.system=SYSTEM)
    is exactly `length` tokens. Raises RuntimeError if a row cannot be fitted."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = f"Question {i}:"
        while n_tokens(tok, render(tok, q)) < length:
            q += rng.choice(_WORDS)
        tries = 0
        while n_tokens(tok, render(tok, q)) != length:
            q = q.rsplit(" ", 1)[0]
            while n_tokens(tok, render(tok, q)) < length:
                q += rng.choice(_WORDS)
            tries += 1
            if tries > 50:
                raise RuntimeError(f"could not build a prompt of exactly {length} tokens")
        rows.append({"prompt": q, "reference": str(i)})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_model(path: Path, shape: dict, tok, dtype: str, device: str, seed: int = 0) -> None:
    """A random-init Qwen2 causal LM of `shape` with the tokenizer's vocabulary, saved with the tokenizer at `path`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      **shape)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg)
    model.to(getattr(torch, dtype)).save_pretrained(path)
    tok.save_pretrained(path)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- children

def _register_verifier() -> None:
    """A cheap graded reward that varies with the text, so groups rarely tie (the benchmark measures throughput)."""
    from verifiers import SignalSpec, Verdict, Verifier, register_verifier

    @register_verifier("gpu_bench_varied")
    class VariedVerifier(Verifier):
        signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

        def _verify(self, completion, reference, *, prompt=None):
            return Verdict(score=(len(completion) % 7) / 6, passed=None, answer_class=completion[:4] or None)


def _overrides(spec: dict, b: dict, device: str, dtype: str, parallelism: str, run_dir: str, steps: int,
               lr: float) -> list[str]:
    return [f"model={spec['model']}", f"data.path={spec['data']}", "data.eval_size=0",
            f"data.train_size={spec['rows']}", f"data.prompt.system={SYSTEM}",
            "verifiers=[{name: gpu_bench_varied, timeout_s: 600}]", "eval.verifier=gpu_bench_varied",
            "eval.at_start=false", "eval.at_end=false", f"train.device={device}", f"train.dtype={dtype}",
            f"train.parallelism={parallelism}", "train.lora.enabled=false", f"train.prompts_per_step={b['P']}",
            f"train.group_size={b['G']}", f"train.micro_batch_groups={b['micro_batch_groups']}",
            "train.skip_zero_variance_groups=false", f"train.learning_rate={lr}", f"train.steps={steps}",
            "rollout.engine=hf", f"sampling.max_new_tokens={b['completion_len']}", "sampling.temperature=1.0",
            "algorithm.beta=0", "monitor.enabled=false", "log.tensorboard=false", "log.save_rollouts=false",
            "log.progress=false", "log.checkpoint_every=0", f"run_dir={run_dir}", f"threads={spec['threads']}"]


def _full(t):
    """A DTensor's (FSDP2) whole tensor; plain tensors as they are."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _sync(device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rel(a, b) -> float:
    import torch

    den = float(torch.linalg.vector_norm(b))
    return float(torch.linalg.vector_norm(a - b)) / den if den else float(torch.linalg.vector_norm(a - b))


def child_check(spec: dict) -> dict:
    import torch

    if spec["cuda"]:  # fp32 means fp32: no TF32 in matmuls or convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    _register_verifier()
    from rlvr.config import load_config
    from rlvr.trainer import Trainer

    b = CHECK
    names = [("cpu", "ddp")] + ([("cuda", "ddp"), ("cuda", "fsdp")] if spec["cuda"] else [("cpu", "fsdp")])
    trainers = {}
    for dev, par in names:
        cfg = load_config(None, _overrides(spec, b, dev, "float32", par, str(Path(spec["work"]) / f"check_{dev}_{par}"),
                                           b["steps"], b["lr"]))
        trainers[f"{dev}_{par}"] = Trainer(cfg)
    ref_name = "cpu_ddp"
    ref = trainers[ref_name]

    def params(tr) -> dict:
        return {n: _full(p.detach()).cpu().double().clone() for n, p in tr.model.named_parameters()}

    theta0 = params(ref)
    steps = []
    for s in range(b["steps"]):
        batch, _, _ = ref.collector.collect(s)
        ref_tokens = [c.token_ids for cs in batch.completions for c in cs]
        entry = {"step": s + 1, "runs": {}}
        grads, metrics = {}, {}
        for name, tr in trainers.items():
            own = None
            if name != ref_name:  # the candidate's own rollout at the same weights (informational)
                ob, _, _ = tr.collector.collect(s)
                mine = [c.token_ids for cs in ob.completions for c in cs]
                own = sum(a == r for a, r in zip(mine, ref_tokens)) / len(ref_tokens)
            m = tr.updater.update(batch)
            metrics[name] = m
            grads[name] = {n: _full(p.grad).detach().cpu().double() for n, p in tr.model.named_parameters()
                           if p.grad is not None}
            entry["runs"][name] = {"loss": m["loss"], "entropy": m.get("entropy"), "grad_norm": m["grad_norm"],
                                   "same_sampled_completions": own}
        r = metrics[ref_name]
        for name in trainers:
            if name == ref_name:
                continue
            m, g, gr = metrics[name], grads[name], grads[ref_name]
            num = sum(float(torch.sum((g[k] - gr[k]) ** 2)) for k in gr)
            den = sum(float(torch.sum(gr[k] ** 2)) for k in gr)
            worst = max(gr, key=lambda k: _rel(g[k], gr[k]))
            entry["runs"][name].update({
                "loss_abs_diff": abs(m["loss"] - r["loss"]),
                "entropy_rel_diff": abs(m["entropy"] - r["entropy"]) / abs(r["entropy"]),
                "grad_norm_rel_diff": abs(m["grad_norm"] - r["grad_norm"]) / r["grad_norm"],
                "grad_rel_l2": (num / den) ** 0.5 if den else num ** 0.5,
                "grad_tensors_compared": len(gr), "grad_tensors_missing": sorted(set(gr) ^ set(g)),
                "worst_grad_tensor": worst, "worst_grad_tensor_rel_l2": _rel(g[worst], gr[worst]),
            })
        steps.append(entry)
    final = {n: params(tr) for n, tr in trainers.items()}
    delta = {k: final[ref_name][k] - theta0[k] for k in theta0}
    dn = sum(float(torch.sum(d ** 2)) for d in delta.values()) ** 0.5
    verdicts = {}
    for name in trainers:
        if name == ref_name:
            continue
        diff = sum(float(torch.sum((final[name][k] - final[ref_name][k]) ** 2)) for k in theta0) ** 0.5
        worst = {k: max(st["runs"][name][k] for st in steps)
                 for k in ("loss_abs_diff", "entropy_rel_diff", "grad_norm_rel_diff", "grad_rel_l2")}
        loss_scale = max(1.0, max(abs(st["runs"][ref_name]["loss"]) for st in steps))
        worst["param_update_rel_l2"] = diff / dn if dn else diff
        ok = {"loss": worst["loss_abs_diff"] <= TOLERANCES["loss_abs"] * loss_scale,
              "entropy": worst["entropy_rel_diff"] <= TOLERANCES["entropy_rel"],
              "grad_norm": worst["grad_norm_rel_diff"] <= TOLERANCES["grad_norm_rel"],
              "grads": worst["grad_rel_l2"] <= TOLERANCES["grad_rel_l2"]
              and not any(st["runs"][name]["grad_tensors_missing"] for st in steps),
              "params": worst["param_update_rel_l2"] <= TOLERANCES["param_update_rel_l2"]}
        verdicts[name] = {"passed": all(ok.values()), "checks": ok, "worst": worst}
    return {"reference": ref_name, "candidates": sorted(verdicts), "tolerances": TOLERANCES, "dtype": "float32",
            "tf32": False if spec["cuda"] else None, "settings": b, "steps": steps, "verdicts": verdicts,
            "passed": all(v["passed"] for v in verdicts.values())}


def child_rlvr(spec: dict, parallelism: str, extra: list[str] | None = None) -> dict:
    import torch

    _register_verifier()
    from rlvr.config import load_config
    from rlvr.trainer import Trainer

    b, device, dtype = spec["batch"], spec["device"], spec["dtype"]
    cfg = load_config(None, _overrides(spec, b, device, dtype, parallelism,
                                       str(Path(spec["work"]) / f"rlvr_{parallelism}{'_async' if extra else ''}"),
                                       spec["steps"], LR) + (extra or []))
    t0 = time.perf_counter()
    tr = Trainer(cfg)
    build_s = time.perf_counter() - t0
    tr.engine.stop_ids = []  # completions run to sampling.max_new_tokens: a fixed amount of work per step
    fwd_bwd: list[float] = []
    opt: list[float] = []
    micro = tr.updater._micro_batch

    def timed_micro_batch(*a, **k):
        _sync(device)
        t = time.perf_counter()
        out = micro(*a, **k)
        _sync(device)
        fwd_bwd.append(time.perf_counter() - t)
        return out

    step_fn = tr.optimizer.step

    def timed_step(*a, **k):
        _sync(device)
        t = time.perf_counter()
        out = step_fn(*a, **k)
        _sync(device)
        opt.append(time.perf_counter() - t)
        return out

    tr.updater._micro_batch = timed_micro_batch
    tr.optimizer.step = timed_step
    per_step = []
    for s in range(spec["steps"]):
        n_fb, n_opt = len(fwd_bwd), len(opt)
        _sync(device)
        t = time.perf_counter()
        m, _ = tr.train_step(s)
        _sync(device)
        per_step.append({"step": s + 1, "seconds": time.perf_counter() - t, "generate": m["time/generate"],
                         "verify": m["time/verify"], "train": m["time/train"],
                         "fwd_bwd": sum(fwd_bwd[n_fb:]), "optimizer": sum(opt[n_opt:]),
                         "micro_batches": len(fwd_bwd) - n_fb, "completion_tokens": m["num_tokens"],
                         "loss": m["loss"], "grad_norm": m["grad_norm"], "updates": m["updates"],
                         "staleness": m.get("rollout/staleness"), "wait_rollout": m.get("time/wait_rollout")})
    out = {"per_step": per_step, "build_s": build_s, "parallelism": parallelism,
           "strategy": tr.parallel.name, "train_dtype": tr.train_precision.dtype, "device": str(tr.device)}
    if device.startswith("cuda"):
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return out


def child_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.extras import profiling

    b, device, dtype = spec["batch"], spec["device"], spec["dtype"]
    cpu = not device.startswith("cuda")
    torch.set_num_threads(spec["threads"])
    tok = load_bench_tokenizer()
    rows = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines()]
    ds = Dataset.from_list([{"prompt": render(tok, r["prompt"]), "reference": r["reference"]} for r in rows])
    timers: list[tuple[str, float]] = []
    # TRL's profiling timers only go to wandb/mlflow/trackio: collect them here instead (as benchmarks/trl_compare.py)
    profiling.ProfilingContext._log_metrics = lambda self, duration: timers.append((self.name, duration))
    lengths: list[int] = []
    steps_log: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _sync(device)
            self.t, self.mark = time.perf_counter(), len(timers)

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            phases: dict[str, float] = {}
            for name, dt in timers[self.mark:]:
                phases[name] = phases.get(name, 0.0) + dt
            steps_log.append({"step": state.global_step, "seconds": time.perf_counter() - self.t, "phases": phases})

    def varied(prompts, completions, completion_ids=None, **kw):
        lengths.extend(len(c) for c in (completion_ids or []))
        return [(len(c) % 7) / 6 for c in completions]

    ga = b["P"] // b["micro_batch_groups"]
    cfg = GRPOConfig(output_dir=str(Path(spec["work"]) / "trl"), use_cpu=cpu, bf16=dtype == "bfloat16", fp16=False,
                     per_device_train_batch_size=b["micro_batch_groups"] * b["G"], gradient_accumulation_steps=ga,
                     num_generations=b["G"], max_completion_length=b["completion_len"],
                     generation_kwargs={"min_new_tokens": b["completion_len"]}, temperature=1.0, top_k=0, top_p=1.0,
                     beta=0.0, learning_rate=LR, num_iterations=1, loss_type="dapo", scale_rewards="group",
                     epsilon=0.2, logging_steps=1, max_steps=spec["steps"], save_strategy="no", report_to="none",
                     seed=0, dataloader_num_workers=0, shuffle_dataset=False, use_vllm=False,
                     gradient_checkpointing=False, model_init_kwargs={"dtype": dtype})
    t0 = time.perf_counter()
    trainer = GRPOTrainer(model=spec["model"], reward_funcs=[varied], args=cfg, train_dataset=ds, callbacks=[Timer()],
                          processing_class=tok)
    build_s = time.perf_counter() - t0
    trainer.train()
    per_step = []
    for s in steps_log:
        ph = s["phases"]
        gen = sum(v for k, v in ph.items() if k.split(".", 1)[-1] in ("transformers.generate",
                                                                       "transformers.generate_batch"))
        per_step.append({"step": s["step"], "seconds": s["seconds"], "generate": gen,
                         "train": s["seconds"] - gen, "phases": ph})
    n = b["P"] * b["G"] * spec["steps"]
    out = {"per_step": per_step, "build_s": build_s, "completion_lengths": sorted(set(lengths)),
           "completions_scored": len(lengths), "completions_expected": n,
           "gradient_accumulation_steps": ga, "per_device_train_batch_size": b["micro_batch_groups"] * b["G"]}
    if not cpu:
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return out


def child(a) -> int:
    spec = json.loads(Path(a.spec).read_text())
    if a.child == "check":
        res = child_check(spec)
    elif a.child == "rlvr_async":
        res = child_rlvr(spec, "ddp", extra=["rollout.max_staleness=1", "rollout.importance_sampling=tis"])
    elif a.child.startswith("rlvr_"):
        res = child_rlvr(spec, a.child.split("_", 1)[1])
    elif a.child == "trl":
        res = child_trl(spec)
    else:
        raise SystemExit(f"unknown child {a.child}")
    res["import_origins"] = import_origins()
    Path(a.result).write_text(json.dumps(res, indent=1, default=str))
    return 0


def import_origins() -> dict:
    """Where the packages the GPU machine lacks were imported from (the wheel folder there)."""
    out = {}
    for name in ("pydantic", "pydantic_core", "datasets", "dill", "multiprocess", "trl", "typing_extensions",
                 "torch", "transformers"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = {"file": getattr(mod, "__file__", None), "version": getattr(mod, "__version__", None)}
    return out


# ---------------------------------------------------------------------------------------------- summary

def summarise(name: str, res: dict, flops: dict, b: dict, peak_tflops: float | None) -> dict:
    timed = [s for s in res["per_step"] if s["step"] >= 2] or res["per_step"]
    med = lambda k: statistics.median(s[k] for s in timed) if timed and k in timed[0] else None  # noqa: E731
    sps = med("seconds")
    out = {"steps_timed": [s["step"] for s in timed], "seconds_per_step": sps, "steps_per_s": 1 / sps if sps else None,
           "generate_s": med("generate"), "train_s": med("train"), "fwd_bwd_s": med("fwd_bwd"),
           "optimizer_s": med("optimizer"), "build_s": res.get("build_s"),
           "peak_gpu_mem_gib": res.get("peak_gpu_mem_gib"), "peak_gpu_reserved_gib": res.get("peak_gpu_reserved_gib")}
    gen_tokens = b["P"] * b["G"] * b["completion_len"]
    train_tokens = b["P"] * b["G"] * (b["prompt_len"] + b["completion_len"])
    out["rollout_tokens_per_s"] = gen_tokens / out["generate_s"] if out["generate_s"] else None
    out["train_tokens_per_s"] = train_tokens / out["train_s"] if out["train_s"] else None
    work = flops["nominal"] if name == "trl" else flops["executed"]  # TRL runs every sequence in full
    out["train_flops_counted"] = "nominal (NeMo RL qwen2, full sequences)" if name == "trl" else \
        "executed (NeMo RL qwen2 coefficients on the tokens rlvr's prefix-shared forward runs)"
    for tag, secs in (("fwd_bwd", out["fwd_bwd_s"]), ("train_phase", out["train_s"])):
        if secs:
            out[f"tflops_{tag}"] = work / secs / 1e12
            out[f"tflops_{tag}_nominal"] = flops["nominal"] / secs / 1e12
            if peak_tflops:
                out[f"mfu_{tag}"] = out[f"tflops_{tag}"] / peak_tflops
                out[f"mfu_{tag}_nominal"] = out[f"tflops_{tag}_nominal"] / peak_tflops
    return out


def _fmt(x, spec=".2f", scale=1.0) -> str:
    return "—" if x is None else format(x * scale, spec)


def markdown(report: dict) -> str:
    runs, ratios = report["runs"], report.get("ratios", {})
    b = report["batch"]
    lines = [f"# GPU check: {report['device_name']}", "",
             f"`{report['command']}` — {report['date']}, torch {report['versions'].get('torch')}, transformers "
             f"{report['versions'].get('transformers')}, trl {report['versions'].get('trl')}, Python "
             f"{report['versions'].get('python')}, wall {report['wall_s']:.0f} s.", "",
             f"Policy: random-init {report['shape_name']} shape ({report['params'] / 1e9:.3f} B parameters, vocab "
             f"{report['vocab']}, SmolLM2 tokenizer), {report['dtype']}; P={b['P']} x G={b['G']}, prompts "
             f"{b['prompt_len']} tokens, completions {b['completion_len']} tokens (forced), micro-batch "
             f"{b['micro_batch_groups']} groups; median over steps 2..{report['steps']}.", "",
             "| run | s/step | steps/s | rollout tok/s | train tok/s | fwd+bwd TFLOP/s | MFU fwd+bwd "
             "| MFU update phase | MFU fwd+bwd, nominal | peak GPU mem GiB | steps/s vs TRL |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        if "error" in r or "skipped" in r:
            lines.append(f"| {name} | {r.get('error') or r.get('skipped')} |||||||||")
            continue
        lines.append(f"| {name} | {_fmt(r['seconds_per_step'])} | {_fmt(r['steps_per_s'], '.3f')} | "
                     f"{_fmt(r['rollout_tokens_per_s'], '.0f')} | {_fmt(r['train_tokens_per_s'], '.0f')} | "
                     f"{_fmt(r.get('tflops_fwd_bwd'), '.1f')} | {_fmt(r.get('mfu_fwd_bwd'), '.1%')} | "
                     f"{_fmt(r.get('mfu_train_phase'), '.1%')} | {_fmt(r.get('mfu_fwd_bwd_nominal'), '.1%')} | "
                     f"{_fmt(r.get('peak_gpu_mem_gib'))} | {_fmt(ratios.get(name), '.2f')} |")
    c = report.get("correctness", {})
    lines += ["", f"Correctness ({c.get('dtype', 'float32')}, reference {c.get('reference')}): "
              + ("**passed**" if c.get("passed") else "**FAILED**" if c else "not run")]
    for name, v in c.get("verdicts", {}).items():
        w = v["worst"]
        lines.append(f"- {name}: {'pass' if v['passed'] else 'FAIL'} — loss |diff| {w['loss_abs_diff']:.2e}, "
                     f"entropy rel {w['entropy_rel_diff']:.2e}, grad norm rel {w['grad_norm_rel_diff']:.2e}, "
                     f"gradient rel L2 {w['grad_rel_l2']:.2e}, parameters after 2 steps rel "
                     f"{w['param_update_rel_l2']:.2e}")
    if c.get("tolerances"):
        t = c["tolerances"]
        lines.append(f"- tolerances: loss {t['loss_abs']:g} (abs, x max(1,|loss|)), entropy {t['entropy_rel']:g}, "
                     f"grad norm {t['grad_norm_rel']:g}, gradient {t['grad_rel_l2']:g}, parameter update "
                     f"{t['param_update_rel_l2']:g} (relative L2)")
    g = report.get("goals", {})
    lines += ["", f"FLOPs: {report['flops_note']} Peak: {report['peak_note']}", "",
              f"Goals: MFU >= 35% bf16 (fwd+bwd, executed FLOPs): {g.get('mfu_35pct')}; steps/s >= 3x TRL: "
              f"{g.get('trl_3x')}."]
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


# ---------------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="run everything on the CPU in float32 (no GPU needed)")
    ap.add_argument("--tiny", action="store_true", help="tiny model and batch (seconds, not minutes)")
    ap.add_argument("--out", default=None, help="folder for the JSON and markdown (default: benchmarks/results/gpu, "
                    "or a temporary folder with --tiny)")
    ap.add_argument("--steps", type=int, default=3, help="steps per measured run; the first is warm-up (default 3)")
    # rlvr_ddp and trl (same precision layout: bf16 weights) first, so the ratio lands even if the budget runs short
    # rlvr_async: rlvr_ddp with rollout.max_staleness=1 (generation of step s+1 beside the update of step s, HF
    # engine on its own copy of the policy, one GPU colocated)
    ap.add_argument("--runs", nargs="+", default=["check", "rlvr_ddp", "trl", "rlvr_async", "rlvr_fsdp"])
    ap.add_argument("--micro-batch-groups", type=int, default=None, help="groups per micro-batch (rlvr) = "
                    "per-device batch / G (TRL); default 2")
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no run after this many seconds (default 420)")
    ap.add_argument("--limit-s", type=float, default=470.0, help="kill a run still going at this many seconds since "
                    "the start (default 470: the whole check ends inside 8 minutes)")
    ap.add_argument("--logs", default=None, help="also copy each run's full log into this folder")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads in each run (default: 1 with --cpu, "
                    "else 4)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    t_start = time.perf_counter()

    import torch
    import transformers

    cuda = not a.cpu
    if cuda and not torch.cuda.is_available():
        print("gpu check: no CUDA device; run with --cpu (and --tiny) on a CPU machine", file=sys.stderr)
        return 2
    device, dtype = ("cuda", "bfloat16") if cuda else ("cpu", "float32")
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    shape_name = "tiny" if a.tiny else "qwen2.5-1.5b"
    shape, b = SHAPES[shape_name], dict(BATCHES["tiny" if a.tiny else "full"])
    if a.micro_batch_groups:
        b["micro_batch_groups"] = a.micro_batch_groups
    out_dir = Path(a.out) if a.out else (Path(tempfile.mkdtemp(prefix="rlvr-gpu-check-out-")) if a.tiny
                                         else ROOT / "benchmarks/results/gpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = "cpu" if not cuda else _slug(device_name)
    work = Path(tempfile.mkdtemp(prefix="rlvr-gpu-check-"))
    threads = a.threads or (1 if a.cpu else 4)

    tok = load_bench_tokenizer()
    rows_needed = b["P"] * a.steps
    bench_rows = exact_prompts(tok, rows_needed, b["prompt_len"])
    check_rows = exact_prompts(tok, CHECK["P"] * CHECK["steps"], CHECK["prompt_len"], seed=1)
    write_jsonl(bench_rows, work / "bench.jsonl")
    write_jsonl(check_rows, work / "check.jsonl")
    t = time.perf_counter()
    make_model(work / "tiny_model", SHAPES["tiny"], tok, "float32", "cpu")
    make_model(work / "bench_model", shape, tok, dtype, device)
    model_s = time.perf_counter() - t
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(
            AutoConfig.from_pretrained(work / "bench_model")).parameters())
    flops = flops_per_step(shape, len(tok), b["P"], b["G"], b["prompt_len"], b["completion_len"])
    peak = PEAK_TFLOPS[dtype] if cuda else None
    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    report = {
        "command": "bash benchmarks/gpu/run.sh " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "device_name": device_name, "device": device, "dtype": dtype,
        "mode": ("cpu" if a.cpu else "gpu") + ("-tiny" if a.tiny else ""),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "trl": trl_version,
                     "cuda": torch.version.cuda if cuda else None},
        "machine": {"cpus": os.cpu_count(), "gpu_mem_gib": (torch.cuda.get_device_properties(0).total_memory / 2**30
                                                            if cuda else None)},
        "shape_name": shape_name, "shape": shape, "vocab": len(tok), "params": n_params, "batch": b,
        "steps": a.steps, "threads": threads, "model_build_s": model_s,
        "flops_per_step": flops,
        "flops_note": "training FLOPs = 3 x forward (2 per multiply-add), counted with NeMo RL's qwen2 formula "
                      "(nemo_rl/utils/flops_formulas.py, applied per sequence as nemo_rl/utils/flops_tracker.py "
                      "does). 'MFU fwd+bwd' and 'MFU update phase' use the FLOPs rlvr's prefix-shared forward executes "
                      f"({flops['executed']:.3e}/step: each prompt once per group); 'nominal' counts every sequence "
                      f"in full ({flops['nominal']:.3e}/step, what NeMo RL would count and TRL executes). NeMo's "
                      "qwen2 formula counts Q, K and V as 3 h^2; with the model's real GQA projections the executed "
                      f"count is {flops['executed_gqa']:.3e} ({flops['executed_gqa'] / flops['executed'] - 1:+.1%}).",
        "peak_tflops": peak,
        "peak_note": (f"{peak} TFLOP/s dense bf16 (NeMo RL's THEORETICAL_TFLOPS for the H100 SXM, 1979/2; the H200 "
                      f"SXM datasheet gives the same); an 8192^3 bf16 matmul measured {MEASURED_MATMUL_TFLOPS_H200} "
                      f"TFLOP/s on this workplace's H200s (KINDS.md)." if cuda else "no MFU on CPU."),
        "runs": {}, "correctness": {}, "logs": {},
    }

    def save() -> None:
        report["wall_s"] = time.perf_counter() - t_start
        ok = {k: v for k, v in report["runs"].items() if "steps_per_s" in v}
        if "trl" in ok and ok["trl"]["steps_per_s"]:
            report["ratios"] = {k: v["steps_per_s"] / ok["trl"]["steps_per_s"] for k, v in ok.items()}
        mfus = [v.get("mfu_fwd_bwd") for k, v in ok.items() if k.startswith("rlvr") and v.get("mfu_fwd_bwd")]
        rat = [v for k, v in report.get("ratios", {}).items() if k.startswith("rlvr")]
        report["goals"] = {"mfu_35pct": (max(mfus) >= 0.35) if mfus and cuda and not a.tiny else None,
                           "best_mfu_fwd_bwd": max(mfus) if mfus else None,
                           "trl_3x": (max(rat) >= 3.0) if rat and not a.tiny else None,
                           "best_ratio_vs_trl": max(rat) if rat else None}
        for folder in [out_dir] + ([Path(a.logs)] if a.logs else []):  # --logs: $OUT on the device machine
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"gpu_check_{slug}.json").write_text(json.dumps(report, indent=1, default=str))
            (folder / f"gpu_check_{slug}.md").write_text(markdown(report))

    base = {"work": str(work), "cuda": cuda, "device": device, "dtype": dtype, "threads": threads, "steps": a.steps,
            "batch": b}
    specs = {"check": {**base, "model": str(work / "tiny_model"), "data": str(work / "check.jsonl"),
                       "rows": len(check_rows)}}
    for r in ("rlvr_fsdp", "rlvr_ddp", "rlvr_async", "trl"):
        specs[r] = {**base, "model": str(work / "bench_model"), "data": str(work / "bench.jsonl"),
                    "rows": len(bench_rows)}
    pypath = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pypath),
           "HF_DATASETS_CACHE": str(work / "hf_datasets"), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    print(f"gpu check: {device_name} | {shape_name} {n_params / 1e6:.1f}M params, {dtype} | P={b['P']} G={b['G']} "
          f"prompt {b['prompt_len']} completion {b['completion_len']} | models built in {model_s:.1f} s | work {work}",
          flush=True)
    for name in a.runs:
        elapsed = time.perf_counter() - t_start
        if elapsed > a.budget_s:
            why = f"skipped: time budget ({elapsed:.0f} s > {a.budget_s:.0f} s)"
            if name == "check":
                report["correctness"] = {"passed": False, "error": why}
            else:
                report["runs"][name] = {"skipped": why}
            print(f"  {name}: {why}", flush=True)
            save()
            continue
        spec_path, res_path, log_path = work / f"{name}.spec.json", work / f"{name}.result.json", work / f"{name}.log"
        spec_path.write_text(json.dumps(specs[name]))
        cmd = [sys.executable, *(["-S"] if sys.flags.no_site else []), str(Path(__file__).resolve()), "--child", name,
               "--spec", str(spec_path), "--result", str(res_path)]
        t = time.perf_counter()
        with open(log_path, "w") as logf:
            try:
                rc = subprocess.run(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                    timeout=max(30.0, min(CHILD_TIMEOUT_S[name], a.limit_s - elapsed))).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        dt = time.perf_counter() - t
        if a.logs:
            Path(a.logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(log_path, Path(a.logs) / f"{name}.log")
        tail = log_path.read_text()[-3000:]
        report["logs"][name] = tail[-1500:] if rc != 0 else None
        if rc != 0 or not res_path.exists():
            print(f"  {name}: FAILED ({rc}) after {dt:.0f} s\n{tail}", flush=True)
            if name == "check":
                report["correctness"] = {"passed": False, "error": f"exit {rc}", "log_tail": tail[-1500:]}
            else:
                report["runs"][name] = {"error": f"exit {rc}"}
            save()
            continue
        res = json.loads(res_path.read_text())
        if name == "check":
            report["correctness"] = res
            print(f"  check: {'passed' if res['passed'] else 'FAILED'} in {dt:.0f} s  "
                  + "; ".join(f"{k}: grad rel {v['worst']['grad_rel_l2']:.1e}, loss diff "
                              f"{v['worst']['loss_abs_diff']:.1e}" for k, v in res["verdicts"].items()), flush=True)
        else:
            s = summarise(name, res, flops, b, peak)
            s["raw"] = res
            s["wall_s"] = dt
            report["runs"][name] = s
            print(f"  {name}: {s['seconds_per_step']:.2f} s/step, rollout {_fmt(s['rollout_tokens_per_s'], '.0f')} "
                  f"tok/s, train {_fmt(s['train_tokens_per_s'], '.0f')} tok/s, MFU fwd+bwd "
                  f"{_fmt(s.get('mfu_fwd_bwd'), '.1%')}, "
                  f"peak {_fmt(s.get('peak_gpu_mem_gib'))} GiB ({dt:.0f} s)", flush=True)
        save()
    save()
    print()
    print(markdown(report))
    print(f"gpu check: wrote {out_dir / f'gpu_check_{slug}.json'} and .md in {report['wall_s']:.0f} s")
    failed = not report["correctness"].get("passed", True) or any("error" in r for r in report["runs"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
