"""Verifier canaries on real data: the math verifier on reasoning-gym rows and the code verifier on HumanEval's
canonical solutions behave; a broken extraction and an always-right grader raise VERIFIER_FAULT before step 1."""

from __future__ import annotations

import json

import pytest

from rlvr.config import DataConfig, load_config
from rlvr.data import load_splits
from rlvr.monitor import read_alerts
from rlvr.monitor.canaries import build_canaries, run_canaries
from verifiers import get_verifier


def _recipe_rows(n=6):
    cfg = load_config("recipes/basic_arithmetic.yaml", ["data.train_size=40", "data.eval_size=4"])
    sp = load_splits(cfg.data)
    return [sp.train[i] for i in range(n)]


def test_math_verifier_passes_its_canaries_on_the_default_recipes_rows():
    rows = _recipe_rows()
    canaries = build_canaries(rows, ["tagged", "boxed", "plain"])
    assert len(canaries) == 6 * 4 and sum(not c.must_pass for c in canaries) == 6
    report = run_canaries([("math", get_verifier("math"))], canaries, 30.0)
    assert report == {"math": []}


@pytest.mark.parametrize("name, must_pass_fails, perturbed_fails", [
    ("tests.toy_verifiers:ColonAnswerVerifier", True, False),   # rejects the right answer in every form
    ("tests.toy_verifiers:AlwaysRightVerifier", False, True),   # accepts the perturbed reference
])
def test_broken_verifiers_fail_their_canaries(name, must_pass_fails, perturbed_fails):
    canaries = build_canaries(_recipe_rows(), ["tagged", "boxed"])
    (fails,) = run_canaries([(name, get_verifier(name))], canaries, 30.0).values()
    assert any(f["must_pass"] for f in fails) == must_pass_fails
    assert any(not f["must_pass"] for f in fails) == perturbed_fails


def test_code_verifier_passes_humaneval_canonical_solutions_and_rejects_a_stub():
    sp = load_splits(DataConfig(task=None, path="humaneval", eval_size=2))
    rows = [sp.train[i] for i in range(3)]
    canaries = build_canaries(rows, ["tagged"])
    assert [c.form for c in canaries] == ["canonical_solution", "not_implemented"] * 3
    code = get_verifier("code")
    try:
        assert run_canaries([("code", code)], canaries, 60.0) == {"code": []}
    finally:
        getattr(code, "close", lambda: None)()


def test_broken_plugin_stops_before_step_1_and_the_opt_out_records_the_fault(tiny_model_dir, tmp_path):
    """A verifier that rejects every right answer stops the run in pre-flight (PreflightError: exit 2, no run dir
    left); opting out by name trains and records the VERIFIER_FAULT at step 0, as the monitor did before."""
    from rlvr.metrics import read_metrics
    from rlvr.preflight import PreflightError
    from rlvr.trainer import Trainer

    run = tmp_path / "r"
    over = [f"model={tiny_model_dir}", f"run_dir={run}", "data.train_size=16", "data.eval_size=2",
            "train.prompts_per_step=2", "train.group_size=2", "train.steps=2", "sampling.max_new_tokens=4",
            "log.progress=false", "log.tensorboard=false", "rollout.engine=hf", "eval.at_start=false",
            "eval.at_end=false", "monitor.stop_on_critical=true",
            "verifiers=[{name: 'tests.toy_verifiers:ColonAnswerVerifier'}]"]
    with pytest.raises(PreflightError) as e:
        Trainer(load_config("recipes/basic_arithmetic.yaml", over))
    msg = str(e.value)
    assert e.value.exit_code == 2 and "'toy_colon_answer' failed every tagged canary" in msg
    assert "<answer>" in msg and "monitor.preflight_ignore=[canary:toy_colon_answer]" in msg and "\n" not in msg
    assert not run.exists()  # a refused run leaves nothing behind
    over.append("monitor.preflight_ignore=[canary:toy_colon_answer]")
    summary = Trainer(load_config("recipes/basic_arithmetic.yaml", over)).run()
    (a,) = [a for a in read_alerts(run) if a["name"] == "VERIFIER_FAULT"]
    assert a["step"] == 0 and a["rule"] == "canary:toy_colon_answer"  # keyed by the verifier's own name
    assert a["severity"] == "critical" and a["evidence"]["failed"] == 16  # the 16 rows' tagged right answers
    assert a["evidence"]["tpr"] == 0.0 and a["evidence"]["j"] == 0.0  # rejects every right and every wrong answer
    ex = a["evidence"]["examples"][0]
    assert ex["must_pass"] and ex["completion"].startswith("<answer>") and not ex["passed"]
    assert "VERIFIER_FAULT" in summary["stopped_by_monitor"] and read_metrics(run) == []  # no step was trained
    json.dumps(a)


def test_scattered_canary_failures_warn_systematic_ones_are_critical():
    """A noisy verifier (benchmarks/monitor/fault_verifiers.py NoisyMath, 10% of verdicts flipped) misgrades a
    known answer now and then: a warning. A grader that rejects every tagged reference, or accepts every perturbed
    one, is broken for the whole run: critical (the severity is decided by the failure pattern, per form)."""
    from rlvr.config import MonitorConfig
    from rlvr.monitor import Monitor

    rows = _recipe_rows(4)
    canaries = build_canaries(rows, ["tagged"])
    per_form = {"tagged": 4, "perturbed": 4}
    one_wrong = {"noisy": [{"form": "tagged", "must_pass": True, "completion": "<answer>3</answer>"}]}
    every_tagged = {"colon": run_canaries([("colon", get_verifier("tests.toy_verifiers:ColonAnswerVerifier"))],
                                          canaries, 30.0)["colon"]}
    every_perturbed = {"yes": run_canaries([("yes", get_verifier("tests.toy_verifiers:AlwaysRightVerifier"))],
                                           canaries, 30.0)["yes"]}
    sev = {}
    for report in (one_wrong, every_tagged, every_perturbed):
        (a,) = Monitor(MonitorConfig()).check_canaries(0, report, len(canaries), per_form)
        sev[a.rule] = (a.severity, a.evidence["systematic"])
    assert sev == {"canary:noisy": ("warning", []), "canary:colon": ("critical", ["every tagged canary"]),
                   "canary:yes": ("critical", ["every perturbed canary"])}


def test_youden_j_of_known_answers_honest_vs_accepts_most_wrong():
    """TPR/FPR from canaries with exact intervals: the math verifier on 16 real rows has J = 1 and a positive lower
    bound; a verifier that passes 3 of 4 wrong answers has J <= 0 and is a fault; with 4 rows J is undetermined."""
    from rlvr.monitor.canaries import canary_rates

    rows = _recipe_rows(16)
    canaries = build_canaries(rows, ["tagged"])
    tallies: dict = {}
    run_canaries([("math", get_verifier("math"))], canaries, 30.0, counts=tallies)
    r = canary_rates(tallies["math"])
    assert tallies["math"] == {"n_pos": 16, "tp": 16, "n_neg": 16, "fp": 0}
    assert r["j"] == 1.0 and r["determined"] and not r["fault"]
    a = 0.025 ** (1 / 16)  # TPR_lo of 16/16 and 1 - FPR_hi of 0/16 (closed forms of Clopper-Pearson)
    assert r["j_lo"] == pytest.approx(a - (1 - a), abs=1e-6)
    # accepts the perturbed reference of 3 rows in 4 (and every right one): J = 1 - 0.75 = 0.25, bound below 0
    sloppy = canary_rates({"n_pos": 16, "tp": 16, "n_neg": 16, "fp": 12})
    assert sloppy["j"] == pytest.approx(0.25) and sloppy["j_lo"] < 0 and sloppy["fault"]
    tallies = {}
    run_canaries([("always", get_verifier("tests.toy_verifiers:AlwaysRightVerifier"))], canaries, 30.0,
                 counts=tallies)
    always = canary_rates(tallies["always"])
    assert always["fpr"] == 1.0 and always["j"] == 0.0 and always["fault"]
    few = canary_rates({"n_pos": 4, "tp": 4, "n_neg": 4, "fp": 0})  # FPR_hi = 1 - 0.025**(1/4) = 0.60
    assert not few["determined"] and not few["fault"]


def test_exact_tests_against_hand_computed_values():
    from rlvr.monitor.heldout import clopper_pearson, fisher_two_sided_p, heldout_decline, mcnemar_drop_p

    # Clopper-Pearson: k = 0 and k = n have closed forms; 3/10 from the tables (0.0667, 0.6525)
    assert clopper_pearson(0, 8)[1] == pytest.approx(1 - 0.025 ** (1 / 8), abs=1e-9)
    assert clopper_pearson(8, 8)[0] == pytest.approx(0.025 ** (1 / 8), abs=1e-9)
    lo, hi = clopper_pearson(3, 10)
    assert lo == pytest.approx(0.0667, abs=1e-4) and hi == pytest.approx(0.6525, abs=1e-4)
    # McNemar: 10 problems right -> wrong, none wrong -> right: p = 2**-10
    assert mcnemar_drop_p([True] * 10 + [False] * 5, [False] * 15) == pytest.approx(2 ** -10)
    assert mcnemar_drop_p([True, False], [False, True]) == pytest.approx(0.75)  # 1 of 2 discordant went down
    # Fisher: the lady tasting tea, 4/4 vs 0/4 -> two-sided p = 2/70
    assert fisher_two_sided_p(4, 4, 0, 4) == pytest.approx(2 / 70)
    assert fisher_two_sided_p(11, 64, 11, 64) == pytest.approx(1.0)
    # held-out decline: Bonferroni over the earlier evaluations
    start = [True] * 20 + [False] * 44
    assert heldout_decline([(0, start)]) is None
    flat = heldout_decline([(0, start), (10, start)])
    assert not flat["fired"] and flat["p_min"] == 1.0
    fell = heldout_decline([(0, start), (10, start), (20, [True] * 4 + [False] * 60)], alpha=0.01)
    assert fell["fired"] and fell["comparisons"] == 2 and fell["p_bonferroni"] == pytest.approx(2 * 2 ** -16)
