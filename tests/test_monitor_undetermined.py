"""'Undetermined' in the live view (`rlvr monitor RUN`), its --json snapshot and `rlvr report RUN`: a rule whose
evidence minimum is not met is shown as undetermined, never with a value that reads as "closed" (issue 13 item 1).

The run is written by hand: the metrics of the default-recipe fp32 run whose windows at steps 21-23 read closure
ratio 0.000 on 4, 4 and 2 informative groups (below monitor.min_informative_groups = 8)."""

import io
import json
import re

import pytest
import yaml

from rlvr.cli import main


def _row(step, cr, groups, rs=None, passes=0.0):
    return {"step": step, "reward": 0.4, "monitor/informative_group_frac": 0.25, "monitor/signal_entropy": 0.2,
            "monitor/closure_ratio": cr, "monitor/closure_ratio_window": cr, "monitor/closure_ratio_window_lo": 0.0,
            "monitor/closure_ratio_window_hi": 0.0, "monitor/window_informative_groups": groups,
            "monitor/reference_sensitivity_window": rs, "monitor/intervention_passes_window": passes,
            "monitor/error_rate": 0.0, "monitor/timeout_rate": 0.0, "monitor/constant_verdict_rate": 0.0}


def _run(tmp_path, rows, monitor=None):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "calib", "train": {"steps": len(rows)},
                                                     "monitor": monitor or {}}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.fixture
def short_run(tmp_path):
    """Three determined windows (0.42 on 12 groups), then three with too few groups reading 0.000."""
    rows = [_row(t, 0.42, 12.0, 1.0, 12.0) for t in (1, 2, 3)]
    rows += [_row(4, 0.0, 4.0, 1.0, 6.0), _row(5, 0.0, 4.0, 1.0, 5.0), _row(6, 0.0, 2.0, None, 0.0)]
    return _run(tmp_path, rows)


def _line(text, label):
    return next(ln for ln in text.splitlines() if label in ln)


@pytest.mark.parametrize("columns", [80, 200])
def test_live_view_shows_undetermined_not_zero(short_run, columns):
    from rich.console import Console

    from rlvr.monitor.view import render

    con = Console(width=columns, file=io.StringIO(), record=True, color_system=None)
    con.print(render(short_run, columns=columns))
    text = con.export_text()
    assert max(len(ln) for ln in text.splitlines()) <= columns
    line = _line(text, "closure ratio (window)")
    assert "undetermined" in line and "0.000" not in line
    if columns >= 120:  # compact: the reason is in the rules panel only
        assert "2 of 8 informative groups" in line
    flat = re.sub(r"\s+", " ", text)
    assert "rules at the latest step" in text
    wide = columns >= 120
    assert ("undetermined: 2 of 8 informative groups" if wide else "undetermined: 2/8 groups") in flat
    assert ("undetermined: 0 of 6 re-scored passes" if wide else "undetermined: 0/6 passes") in flat
    assert "closed" not in flat.lower().replace("closed_loop", "")


def test_json_snapshot_says_undetermined(short_run, capsys):
    assert main(["monitor", str(short_run), "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["latest"]["monitor/closure_ratio_window"] == "undetermined"
    assert snap["undetermined"]["monitor/closure_ratio_window"] == "2 of 8 informative groups"
    rules = {(r["name"], r["rule"]): r for r in snap["rules"]}
    cr = rules[("CLOSED_LOOP", "closure_ratio")]
    assert cr["state"].startswith("undetermined") and cr["value"] is None and cr["raw_value"] == 0.0
    assert rules[("CLOSED_LOOP", "reference_blind")]["state"].startswith("undetermined")
    assert rules[("VERIFIER_FAULT", "error_rate")]["state"] == "ok"


def test_report_says_undetermined(short_run):
    assert main(["report", str(short_run)]) == 0
    md = (short_run / "report" / "report.md").read_text()
    assert "| CLOSED_LOOP (closure_ratio) | warning | undetermined | undetermined: 2 of 8 informative groups |" in md
    assert "`monitor/closure_ratio_window` undetermined on 3 of 6 steps" in md
    # start/end means use determined windows only: the three 0.000 windows do not drag the end towards "closed"
    assert "| closure ratio (window) (determined steps) | 0.420 | 0.420 |" in md


def test_determined_values_are_shown_and_min_comes_from_the_run_config(tmp_path):
    from rlvr.monitor.view import latest_json

    rows = [_row(t, 0.0, 4.0) for t in (1, 2, 3)]
    run = _run(tmp_path, rows, {"min_informative_groups": 4})  # 4 groups meet this run's own minimum
    snap = latest_json(run)
    assert snap["latest"]["monitor/closure_ratio_window"] == 0.0 and not snap["undetermined"].get(
        "monitor/closure_ratio_window")
    state = {r["rule"]: r["state"] for r in snap["rules"]}
    assert state["closure_ratio"] == "condition holds"


def test_all_undetermined_report_row(tmp_path):
    run = _run(tmp_path, [_row(t, 0.0, 2.0) for t in (1, 2, 3)])
    assert main(["report", str(run)]) == 0
    md = (run / "report" / "report.md").read_text()
    assert "| closure ratio (window) | undetermined | undetermined |" in md
