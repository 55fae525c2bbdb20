"""Datasets: prompts and references as a `datasets.Dataset` with columns `prompt`, `reference`, `meta`.

Sources:
  * a reasoning-gym task (ships offline): the training split and the held-out split are generated with different
    seeds, and any held-out question is removed from the training split, so training never sees it;
  * a local .jsonl/.json/.parquet file, or any path `datasets.load_dataset`/`load_from_disk` reads: split into
    train/held-out by a seeded shuffle.

`meta` is a JSON string (reasoning-gym metadata differs per task, which Arrow cannot store as one struct).
Prompts become chat messages with :func:`build_messages` (system line, few-shot turns, the question).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from rlvr.config import DataConfig, PromptConfig
from rlvr.errors import DataError

COLUMNS = ("prompt", "reference", "meta")


@dataclass
class Splits:
    train: Dataset
    eval: Dataset


def _reasoning_gym_rows(task: str, size: int, seed: int, task_config: dict) -> list[dict]:
    import reasoning_gym as rg

    try:
        from reasoning_gym.factory import DATASETS

        known = sorted(DATASETS)
    except ImportError:  # an older reasoning-gym: no registry to suggest from
        known = []
    if known and task not in known:
        import difflib

        close = difflib.get_close_matches(task, known, n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known tasks: {', '.join(known[:12])}, ..."
        raise DataError(f"data.task = '{task}': not a reasoning-gym task; {hint} (or set data.path to a file)")
    try:
        items = rg.create_dataset(task, size=size, seed=seed, **task_config)
    except Exception as e:  # bad config
        raise DataError(f"data.task '{task}' with data.task_config {task_config}: reasoning-gym refused it "
                        f"({type(e).__name__}: {e})") from None
    return [
        {"prompt": it["question"], "reference": str(it["answer"]), "meta": json.dumps(it.get("metadata", {}), default=str)}
        for it in items
    ]


def _humaneval_rows() -> list[dict]:
    from verifiers.code.humaneval import load_humaneval

    return [{"prompt": r["prompt"], "reference": json.dumps(r["reference"]),
             "meta": json.dumps({"task_id": r["task_id"], "canonical_solution": r["canonical_solution"]})}
            for r in load_humaneval()]


# data.path values that name a dataset shipped in a PyPI package (checked before files and the datasets library)
BUILTIN_DATASETS = {"humaneval": _humaneval_rows}


def _reference_text(x) -> str:
    """References are stored as text: strings as they are, structured ones (a code test suite) as JSON."""
    return x if isinstance(x, str) else json.dumps(x, default=str)


def _file_rows(cfg: DataConfig) -> list[dict]:
    import datasets

    if cfg.path in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[cfg.path]()
    path = Path(cfg.path).expanduser()
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"data.path '{cfg.path}': the file is empty; it needs one row per problem with columns "
                        f"'{cfg.prompt_column}' and '{cfg.reference_column}'")
    try:
        if path.is_file():
            fmt = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
            if fmt is None:
                raise DataError(f"data.path '{cfg.path}': unsupported file type '{path.suffix}'; use .jsonl, .json, "
                                f".parquet or .csv")
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
        elif path.is_dir() and (path / "dataset_info.json").exists():
            ds = datasets.load_from_disk(str(path))
        elif path.exists() or str(cfg.path).startswith(("/", ".", "~")):
            if not path.exists():
                raise DataError(f"data.path '{cfg.path}': file does not exist")
            ds = datasets.load_dataset(str(path), split="train")
        else:
            ds = datasets.load_dataset(str(cfg.path), split="train")
    except DataError:
        raise
    except Exception as e:
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:  # datasets wraps the parser's error
            cause = cause.__cause__ or cause.__context__
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise DataError(f"data.path '{cfg.path}': could not be read as {path.suffix or 'a dataset'} "
                        f"({type(cause).__name__}: {detail[:200]}); JSON lines need one object per line, e.g. "
                        f'{{"{cfg.prompt_column}": "2+3", "{cfg.reference_column}": "5"}}') from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"]
    for col, field in ((cfg.prompt_column, "prompt_column"), (cfg.reference_column, "reference_column")):
        if col not in ds.column_names:
            raise DataError(f"data.path '{cfg.path}': missing column '{col}' (data.{field}); columns are "
                            f"{ds.column_names}")
    rows = []
    for r in ds:
        meta = r.get("meta", {})
        rows.append({"prompt": r[cfg.prompt_column], "reference": _reference_text(r[cfg.reference_column]),
                     "meta": meta if isinstance(meta, str) else json.dumps(meta, default=str)})
    return rows


def load_splits(cfg: DataConfig, eval_data: DataConfig | None = None) -> Splits:
    """Build the training and held-out splits. With `eval_data` (the recipe's eval.data), the held-out split is its
    `eval_size` problems and training takes `cfg` whole, minus prompts also held out. Raises DataError on an unknown
    task, bad file or missing column."""
    if eval_data is not None:
        eval_rows = heldout_rows(eval_data)
        held_out = {r["prompt"] for r in eval_rows}
        if cfg.task is not None:
            source = _reasoning_gym_rows(cfg.task, cfg.train_size, cfg.train_seed, cfg.task_config)
        else:
            source = _file_rows(cfg)
            random.Random(cfg.eval_seed).shuffle(source)
        train_rows = [r for r in source if r["prompt"] not in held_out][: cfg.train_size]
    elif cfg.task is not None:
        eval_rows = _reasoning_gym_rows(cfg.task, cfg.eval_size, cfg.eval_seed, cfg.task_config) if cfg.eval_size else []
        held_out = {r["prompt"] for r in eval_rows}
        train_rows = [r for r in _reasoning_gym_rows(cfg.task, cfg.train_size, cfg.train_seed, cfg.task_config)
                      if r["prompt"] not in held_out]
    else:
        rows = _file_rows(cfg)
        random.Random(cfg.eval_seed).shuffle(rows)
        eval_rows = rows[: cfg.eval_size]
        held_out = {r["prompt"] for r in eval_rows}
        train_rows = [r for r in rows[cfg.eval_size:] if r["prompt"] not in held_out][: cfg.train_size]
    if not train_rows:
        raise DataError(f"data: no training problems left (train_size={cfg.train_size}, eval_size={cfg.eval_size})")
    empty = {c: [] for c in COLUMNS}
    return Splits(
        train=Dataset.from_list(train_rows) if train_rows else Dataset.from_dict(empty),
        eval=Dataset.from_list(eval_rows) if eval_rows else Dataset.from_dict(empty),
    )


def file_order(cfg: DataConfig) -> list[dict] | None:
    """The rows of `data.path` in the file's own order (load_splits shuffles them), for checks that compare a row
    with its neighbours (the pre-flight's shifted-reference test); None for a generated task, whose rows have no
    file order to be shifted in. Raises DataError like load_splits."""
    return None if cfg.task is not None else _file_rows(cfg)


def heldout_rows(cfg: DataConfig, n: int | None = None) -> list[dict]:
    """The held-out split of `cfg` exactly as `load_splits` builds it (same generator seed or seeded shuffle), without
    building the training split. `n` (None: cfg.eval_size) caps the rows; for files `n=0` means every row.
    Raises DataError like load_splits."""
    size = cfg.eval_size if n is None else n
    if cfg.task is not None:
        return _reasoning_gym_rows(cfg.task, size or cfg.eval_size, cfg.eval_seed, cfg.task_config)
    rows = _file_rows(cfg)
    random.Random(cfg.eval_seed).shuffle(rows)
    return rows[:size] if size else rows


def build_messages(question: str, prompt: PromptConfig) -> list[dict[str, str]]:
    """Chat messages for one question: [system], few-shot user/assistant pairs, then the user turn."""
    msgs: list[dict[str, str]] = []
    if prompt.system is not None:
        msgs.append({"role": "system", "content": prompt.system})
    for turn in prompt.few_shot:
        msgs.append({"role": "user", "content": turn.user})
        msgs.append({"role": "assistant", "content": turn.assistant})
    msgs.append({"role": "user", "content": prompt.user_template.format(question=question)})
    return msgs


def render_prompt(tokenizer, question: str, prompt: PromptConfig) -> str:
    """The prompt text the policy sees: the chat template applied with the generation prompt appended."""
    return tokenizer.apply_chat_template(build_messages(question, prompt), tokenize=False, add_generation_prompt=True)


class PromptSampler:
    """Deterministic prompt order: epoch e is a permutation seeded by (seed, e); step t takes the next P indices.

    Stateless given the step, so a resumed run draws exactly the prompts an uninterrupted run would have.
    """

    def __init__(self, n: int, per_step: int, seed: int):
        if n < 1:
            raise DataError("data: the training split is empty")
        self.n, self.per_step, self.seed = n, per_step, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            idx = list(range(self.n))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(idx)
            self._perms = {epoch: idx}
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        """Indices of the prompts used at optimizer step `step` (0-based)."""
        out = []
        for k in range(step * self.per_step, (step + 1) * self.per_step):
            epoch, pos = divmod(k, self.n)
            out.append(self._perm(epoch)[pos])
        return out

    def extra_indices(self, step: int, round: int, exclude: list[int] | set[int] = ()) -> list[int]:
        """P more prompt indices for extra generation round `round` >= 1 of step `step` (dynamic sampling).

        Drawn without replacement from a stream seeded by (seed, step, round) alone, avoiding `exclude` (the
        prompts already drawn this step) while enough others remain, so they do not depend on earlier steps and the
        epoch order of `indices` is untouched: a resumed run draws the same extra prompts.
        """
        if round < 1:
            raise ValueError("extra_indices: round 0 is indices(step); extra rounds start at 1")
        rng = random.Random(((self.seed * 1_000_003 + step) * 1_000_033 + round) * 7 + 3)
        excluded = set(exclude)
        pool = [i for i in range(self.n) if i not in excluded]
        if len(pool) < self.per_step:
            pool = list(range(self.n))
        if len(pool) >= self.per_step:
            return rng.sample(pool, self.per_step)
        return [rng.choice(pool) for _ in range(self.per_step)]
