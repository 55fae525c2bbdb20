"""`rlvr monitor RUN_DIR` and `rlvr report RUN_DIR` on a tiny-model training run and on a synthetic run with
alerts; `rlvr train` exit status 3 when the monitor stops it."""

import json

import pytest

from monitor_streams import G, P, length_hacked_step, observe, open_step
from rlvr.cli import main
from rlvr.config import load_config
from rlvr.metrics import MetricSink
from rlvr.monitor import Monitor, Signal
from rlvr.trainer import Trainer
from verifiers import SignalSpec


def _overrides(model_dir, run_dir, *extra):
    return [f"model={model_dir}", f"run_dir={run_dir}", "verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]",
            "data.train_size=24", "data.eval_size=4", "train.prompts_per_step=2", "train.group_size=4",
            "sampling.max_new_tokens=8", "log.progress=false", "log.tensorboard=false", "rollout.engine=hf", *extra]


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny-run")
    Trainer(load_config("recipes/basic_arithmetic.yaml",
                        _overrides(tiny_model_dir, run, "train.steps=4", "eval.every=2"))).run()
    return run


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """Open for 4 steps, then the length hack (SPURIOUS_SIGNAL fires at step 7), 10 steps."""
    run = tmp_path_factory.mktemp("synthetic-run")
    mon = Monitor(None, [Signal("split", 1.0, SignalSpec("graded", True, "external", "cheap"))], run_dir=run)
    mon.start()
    sink = MetricSink(run, tensorboard=False)
    for t in range(1, 11):
        d = (open_step if t <= 4 else length_hacked_step)(t)
        m, _ = observe(mon, t, d)
        sink.log(t, {"reward": sum(map(sum, d["rewards"])) / (P * G), **m})
    sink.close()
    return run


def test_report_on_a_tiny_training_run(tiny_run, capsys):
    assert main(["report", str(tiny_run)]) == 0
    png, md = tiny_run / "report" / "report.png", tiny_run / "report" / "report.md"
    assert f"wrote {png}" in capsys.readouterr().out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    text = md.read_text()
    assert "held-out pass@1: before" in text and "(n = 4)" in text and "## Alerts" in text
    assert "| signal entropy H_t |" in text and "| closure ratio |" in text and "![report](report.png)" in text


def test_monitor_once_and_json_on_a_tiny_training_run(tiny_run, capsys):
    assert main(["monitor", str(tiny_run), "--once"]) == 0
    out = capsys.readouterr().out
    assert "step 4/4" in out and "finished" in out and "signal entropy H_t" in out and "informative groups" in out
    assert main(["monitor", str(tiny_run), "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["step"] == 4 and "monitor/signal_entropy" in snap["latest"] and isinstance(snap["alerts"], list)


def test_monitor_and_report_show_alerts(synthetic_run, capsys):
    assert main(["monitor", str(synthetic_run), "--once"]) == 0
    out = capsys.readouterr().out
    assert "SPURIOUS_SIGNAL" in out and "feature:length_tertile" in out and "1 active" in out
    assert "spurious share: length_tertile" in out and "running" in out  # no summary.json yet
    assert main(["report", str(synthetic_run), "--out", str(synthetic_run / "rep")]) == 0
    md = (synthetic_run / "rep" / "report.md").read_text()
    assert "| SPURIOUS_SIGNAL | feature:length_tertile | warning | 7 | still active |" in md
    assert "**SPURIOUS_SIGNAL**: The reward is explained by a surface feature" in md


def test_monitor_and_report_errors(tmp_path, capsys):
    assert main(["monitor", str(tmp_path / "nope"), "--once"]) == 2
    assert "run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_train_exits_3_when_the_monitor_stops_it(tiny_model_dir, tmp_path, capsys):
    code = main(["train", "recipes/basic_arithmetic.yaml",
                 *_overrides(tiny_model_dir, tmp_path / "run", "train.steps=2", "verifiers=[{name: majority_vote}]",
                             "monitor.stop_on_critical=true")])
    out = capsys.readouterr()
    assert code == 3 and "stopped by the monitor: CLOSED_LOOP (declared_self) at step 0" in out.out
    assert "CRITICAL CLOSED_LOOP" in out.out + out.err


def test_live_view_follows_a_growing_run_and_stops_when_it_finishes(synthetic_run, tmp_path):
    """watch() redraws while metrics.jsonl grows and returns once summary.json appears."""
    import io
    import shutil
    import threading
    import time

    from rich.console import Console

    from rlvr.monitor.view import watch

    run = tmp_path / "live"
    shutil.copytree(synthetic_run, run)
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:5]))
    buf = io.StringIO()
    done = threading.Event()
    t = threading.Thread(target=lambda: (watch(run, interval=0.05, console=Console(file=buf, width=150)), done.set()),
                         daemon=True)
    t.start()
    time.sleep(0.5)
    assert not done.is_set()  # still following: no summary.json yet
    with open(run / "metrics.jsonl", "a") as fh:
        fh.writelines(lines[5:])
    time.sleep(0.5)
    (run / "summary.json").write_text("{}")
    assert done.wait(10)
    out = buf.getvalue()
    assert "step 10/?" in out and "finished" in out


@pytest.mark.parametrize("loop", ["open", "closed", "spurious"])
def test_closure_recipes_run_on_a_tiny_model(loop, tiny_model_dir, tmp_path):
    """The closure benchmark's recipes, 2 steps on the tiny model (never SmolLM2 here): they load, train, and the
    monitor measures the reward-gold gap whenever the reward is not the reference verifier itself."""
    extra = ["data.train_size=24", "data.eval_size=2", "train.prompts_per_step=2", "train.group_size=4",
             "sampling.max_new_tokens=8", "log.progress=false", "log.tensorboard=false", "train.steps=2",
             "eval.every=0", f"model={tiny_model_dir}", f"run_dir={tmp_path / loop}"]
    if loop == "spurious":  # the recipe's token counter, pointed at the tiny model's copy of the SmolLM2 tokenizer
        extra.append("verifiers=[{name: prompt_split, kwargs: {even: {name: math}, odd: {name: length_bonus, "
                     f"kwargs: {{cap: 24, unit: tokens, tokenizer: '{tiny_model_dir}'}}}}}}}}]")
    cfg = load_config(f"recipes/closure_{loop}.yaml", extra)
    assert cfg.train.steps == 2 and cfg.monitor.stop_on_critical is False
    Trainer(cfg).run()
    rows = [json.loads(ln) for ln in (tmp_path / loop / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert ("monitor/reward_gold_gap" in rows[0]) == (loop != "open")
    alerts = [json.loads(ln) for ln in (tmp_path / loop / "alerts.jsonl").read_text().splitlines()] \
        if (tmp_path / loop / "alerts.jsonl").exists() else []
    declared = [(a["name"], a["rule"]) for a in alerts if a["step"] == 0]
    assert declared == ([("CLOSED_LOOP", "declared_self")] if loop == "closed" else [])


@pytest.mark.parametrize("columns", [80, 200])
def test_live_view_keeps_every_number_whole_at_80_and_200_columns(synthetic_run, columns):
    """At 80 columns the view used to cut every value to four characters (`0.3…`, `[0.306, 0.8…`)."""
    import io
    import re

    from rich.console import Console

    from rlvr.monitor.view import render

    con = Console(width=columns, file=io.StringIO(), record=True, color_system=None)
    con.print(render(synthetic_run, columns=columns))
    text = con.export_text()
    assert max(len(line) for line in text.splitlines()) <= columns
    assert "…" not in text
    rows = [json.loads(x) for x in (synthetic_run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    for key in ("monitor/signal_entropy", "monitor/informative_group_frac"):
        assert f"{last[key]:.3f}" in text  # the latest value, whole
    lo, hi = last["monitor/signal_entropy_lo"], last["monitor/signal_entropy_hi"]
    assert f"[{lo:.3f}, {hi:.3f}]" in text  # its interval, whole
    alert = json.loads((synthetic_run / "alerts.jsonl").read_text().splitlines()[0])
    flat = re.sub(r"\s+", " ", text)
    numbers = {k: v for k, v in alert["evidence"].items() if isinstance(v, float)}
    assert numbers
    from rlvr.monitor.alerts import _fmt

    for k, v in numbers.items():  # the alert's evidence, every number whole (wrapped at spaces, never cut)
        assert f"{k}={_fmt(v)}" in flat, k
    assert ("meaning" in text) == (columns >= 120)


def test_replay_runs_the_current_monitor_over_a_finished_run(tiny_model_dir, tmp_path, capsys):
    """A run trained with the monitor off, on a reward that never reads the reference: replaying its rollouts.jsonl
    (intervention re-scored with the run's own verifier and prompts) raises CLOSED_LOOP (reference_blind) at step 4,
    as the live monitor does (tests/test_monitor_verifiers.py), and writes nothing into the run's alerts.jsonl."""
    run = tmp_path / "r"
    Trainer(load_config("recipes/basic_arithmetic.yaml", _overrides(
        tiny_model_dir, run, "train.steps=4", "train.prompts_per_step=4", "monitor.enabled=false",
        "monitor.intervention_groups=4", "eval.at_start=false", "eval.at_end=false",
        "verifiers=[{name: 'tests.toy_verifiers:FirstCompletionVerifier'}]",
        "monitor.preflight_ignore=[canary:toy_first_completion]"))).run()
    assert not (run / "alerts.jsonl").exists()
    assert main(["monitor", str(run), "--replay"]) == 0
    out = capsys.readouterr().out
    assert "step 4: CRITICAL CLOSED_LOOP (reference_blind)" in out and "replayed 4 steps" in out
    assert (run / "replay" / "alerts.jsonl").is_file() and not (run / "alerts.jsonl").exists()


def test_report_start_end_table_uses_non_overlapping_windows_and_the_step0_evaluation(tmp_path):
    """A 30-step run evaluated at steps 10, 20, 30 (0.375, 0.5, 0.516) after 0.172 before training: the report's
    held-out row reads start 0.172 and end 0.516 (it once read 0.448 | 0.448, the mean of the same three values)."""
    import json as _json

    from rlvr.monitor.report import markdown

    run = tmp_path / "r"
    run.mkdir()
    rows = []
    for step in range(1, 31):
        r = {"step": step, "reward": 0.1 + step / 100}
        if step % 10 == 0:
            r["eval/pass@1"] = {10: 0.375, 20: 0.5, 30: 0.516}[step]
        rows.append(r)
    (run / "metrics.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(_json.dumps({"heldout_pass@1_before": 0.172, "heldout_pass@1_after": 0.516,
                                                    "heldout_n": 64}))
    md = markdown(run, None)
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| held-out pass@1")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    # 4 evaluations -> windows of 2: start mean(0.172, 0.375) = 0.2735, end mean(0.5, 0.516) = 0.508
    assert float(cells[1]) == pytest.approx(0.2735, abs=6e-4) and float(cells[2]) == pytest.approx(0.508, abs=6e-4)
