"""`rlvr report RUN_DIR`: plots of a run's reward, held-out accuracy and monitor quantities with the alerts on one
time axis (RUN_DIR/report/report.png), and a short markdown summary (RUN_DIR/report/report.md)."""

from __future__ import annotations

import json
from pathlib import Path

from rlvr.metrics import read_metrics
from rlvr.monitor.alerts import evidence_text, read_alerts
from rlvr.monitor.view import (GATED, _finite, _num, alert_spans, determined_series, monitor_config, quantity_keys,
                               rule_states, undetermined)

_SEVERITY_COLOR = {"critical": "tab:red", "warning": "tab:orange", "info": "tab:gray"}

# panel title -> [(metrics key, label, style)]
PANELS = [
    ("reward and accuracy", [("reward", "training reward", "-"),
                             ("monitor/reference_pass@1", "reference pass@1 on rollouts", "-"),
                             ("eval/pass@1", "held-out pass@1 (greedy)", "o-"),
                             ("monitor/reward_gold_gap", "reward-gold gap", ":")]),
    ("information in the signal (bits / ratio)", [("monitor/signal_entropy", "signal entropy H_t", "-"),
                                                  ("monitor/novel_bits", "novel bits N_t", "-"),
                                                  ("monitor/closure_ratio", "closure ratio (step)", ":"),
                                                  ("monitor/closure_ratio_window", "closure ratio (window)", "-")]),
    ("what explains the signal", [("monitor/informative_group_frac", "informative groups", "-"),
                                  ("monitor/class_efficiency", "class efficiency", "-")]),
    ("diversity", [("monitor/distinct_per_group", "distinct answers / group", "-"),
                   ("monitor/policy_entropy", "policy entropy", "-"),
                   ("monitor/pass@G", "pass@G (reward)", ":")]),
    ("verifier health", [("monitor/error_rate", "errors", "-"), ("monitor/timeout_rate", "timeouts", "-"),
                         ("monitor/constant_verdict_rate", "constant verdicts", "-")]),
]


def _series(rows: list[dict], key: str, mcfg=None) -> tuple[list[int], list[float]]:
    """(steps, values) where `key` is defined and, for an evidence-gated quantity, determined (an undetermined
    closure-ratio window is left out rather than drawn at its near-0 value)."""
    vals = determined_series(rows, key, mcfg) if mcfg is not None else [r.get(key) for r in rows]
    pts = [(r["step"], v) for r, v in zip(rows, vals) if _finite(v)]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot(run_dir: Path, out: Path) -> Path:
    """Write the figure: one panel per group of quantities, shared step axis, alert spans shaded and onsets
    marked with dashed lines (red: critical, orange: warning). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    spans = alert_spans(read_alerts(run_dir))
    summary = _summary(run_dir)
    mcfg = monitor_config(run_dir)
    panels = [list(p) for p in PANELS]
    spurious = sorted({k for r in rows for k in r if k.startswith("monitor/spurious_share/")})
    panels[2][1] = panels[2][1] + [(k, "spurious share: " + k.rsplit("/", 1)[1], "--") for k in spurious]
    last = max([r["step"] for r in rows] + [1])
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(11, 2.3 * (len(panels) + 1)), sharex=True,
                             gridspec_kw={"height_ratios": [3] * len(panels) + [max(1.2, 0.45 * len(spans) + 0.6)]})
    for ax, (title, series) in zip(axes, panels):
        for key, label, style in series:
            xs, ys = _series(rows, key, mcfg)
            if key in GATED:
                label += " (determined windows only)"
            if key == "eval/pass@1" and summary.get("heldout_pass@1_before") is not None:
                xs, ys = [0] + xs, [summary["heldout_pass@1_before"]] + ys
            if not xs:
                continue
            line, = ax.plot(xs, ys, style, label=label, lw=1.6, ms=4)
            lo, hi = _series(rows, key + "_lo"), _series(rows, key + "_hi")
            if lo[0] and len(lo[0]) == len(hi[0]) and key.startswith("monitor/") and "closure_ratio" not in key:
                ax.fill_between(lo[0], lo[1], hi[1], color=line.get_color(), alpha=0.12, lw=0)
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(alpha=0.3)
        if title == "verifier health":  # rates: keep 0 at the bottom and a visible scale when all are 0
            ax.set_ylim(-0.02, max([0.1] + [y * 1.1 for ln in ax.lines for y in ln.get_ydata()]))
        if ax.lines:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        for s in spans:
            color = _SEVERITY_COLOR.get(s["severity"], "tab:gray")
            ax.axvline(s["fired"], color=color, ls="--", lw=1)
            ax.axvspan(s["fired"], s["cleared"] if s["cleared"] is not None else last, color=color, alpha=0.06)
    # alert timeline: one row per firing
    tl = axes[-1]
    tl.set_title("alerts (bar: active span; dashed line in the panels: onset)", loc="left", fontsize=10)
    for i, s in enumerate(spans):
        color = _SEVERITY_COLOR.get(s["severity"], "tab:gray")
        end = s["cleared"] if s["cleared"] is not None else last
        tl.barh(i, max(end - s["fired"], 0.3), left=s["fired"], color=color, alpha=0.7, height=0.6)
        tl.text(s["fired"], i, f" {s['name']} ({s['rule']})", va="center", fontsize=7)
    tl.set_yticks([])
    tl.set_ylim(-0.8, max(len(spans), 1) - 0.2)
    if not spans:
        tl.text(0.5, 0.5, "no alert fired", transform=tl.transAxes, ha="center", va="center", fontsize=9)
    tl.set_xlabel("optimizer step")
    from matplotlib.ticker import MaxNLocator

    tl.xaxis.set_major_locator(MaxNLocator(integer=True))
    tl.set_xlim(-0.5 if any(s["fired"] == 0 for s in spans) or summary.get("heldout_pass@1_before") is not None
                else 0.5, last + 0.5)
    fig.suptitle(f"rlvr report: {run_dir.name}", x=0.01, ha="left", fontsize=12)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _summary(run_dir: Path) -> dict:
    p = Path(run_dir) / "summary.json"
    return json.loads(p.read_text()) if p.exists() else {}


def markdown(run_dir: Path, png: Path | None) -> str:
    """The report's text: outcome, alerts with evidence and action, and each quantity at the start and the end."""
    rows = read_metrics(run_dir)
    spans = alert_spans(read_alerts(run_dir))
    summary = _summary(run_dir)
    mcfg = monitor_config(run_dir)
    k = min(3, len(rows))
    lines = [f"# rlvr report: {Path(run_dir).name}", ""]
    lines.append(f"- steps logged: {len(rows)}" + (" (finished)" if summary else " (running or interrupted)"))
    if summary:
        lines.append(f"- held-out pass@1: before {_num(summary.get('heldout_pass@1_before'))} -> after "
                     f"{_num(summary.get('heldout_pass@1_after'))} (n = {summary.get('heldout_n')})")
        if summary.get("stopped_by_monitor"):
            lines.append(f"- **stopped by the monitor**: {summary['stopped_by_monitor']}")
    if png is not None:
        lines += ["", f"![report]({png.name})"]
    lines += ["", "## Alerts", ""]
    if not spans:
        lines.append("No alert fired.")
    else:
        lines += ["| alert | rule | severity | fired at step | cleared at step | evidence at onset |",
                  "|---|---|---|---|---|---|"]
        for s in spans:
            ev = evidence_text(s["evidence"])
            lines.append(f"| {s['name']} | {s['rule']} | {s['severity']} | {s['fired']} | "
                         f"{s['cleared'] if s['cleared'] is not None else 'still active'} | {ev} |")
        lines += ["", "What to do:", ""]
        for name in dict.fromkeys(s["name"] for s in spans):
            action = next(s["action"] for s in spans if s["name"] == name)
            lines.append(f"- **{name}**: {action}")
    states = rule_states(rows, spans, mcfg)
    if states:
        lines += ["", "## Rules at the last step", "",
                  "A rule whose evidence minimum is not met is *undetermined*: it neither fires nor clears, and its "
                  "value is not a verdict (a closure ratio of 0.000 on 2 informative groups does not say "
                  "\"closed\").", "",
                  "| alert (rule) | severity | value | state | threshold |", "|---|---|---|---|---|"]
        for r in states:
            und = r["state"].startswith("undetermined")
            lines.append(f"| {r['name']} ({r['rule']}) | {r['severity']} | "
                         f"{'undetermined' if und else _num(r['value'])} | {r['state']} | {r['threshold']} |")
        lines.append("")
        for key, (_, field, what) in GATED.items():
            if any(key in r for r in rows):
                n = sum(1 for r in rows if undetermined(r, key, mcfg))
                lines.append(f"- `{key}` undetermined on {n} of {len(rows)} steps (evidence minimum "
                             f"`monitor.{field}` = {getattr(mcfg, field)} {what})")
    lines += ["", f"## Quantities (mean of the first and the last {k} steps that measured it; the two windows never "
              f"overlap, so fewer steps use fewer; held-out pass@1 starts at the evaluation before training)", "",
              "| quantity | start | end |", "|---|---|---|"]
    for label, key, _ in quantity_keys(rows):
        gated = key in GATED
        vals = [(r["step"], v) for r, v in zip(rows, determined_series(rows, key, mcfg)) if _finite(v)]
        if not vals:
            if gated and any(key in r for r in rows):
                lines.append(f"| {label} | undetermined | undetermined |")
            continue
        if gated:  # the first and the last k determined steps, never an undetermined window's value
            label += " (determined steps)"
        if key == "eval/pass@1" and summary.get("heldout_pass@1_before") is not None:
            vals = [(0, summary["heldout_pass@1_before"])] + vals  # the evaluation before training is the start
        kq = min(k, len(vals) // 2)  # two windows that never overlap (3 evaluations: the first vs the last)
        if kq == 0:
            lines.append(f"| {label} | n/a (measured once) | {_num(vals[-1][1])} |")
            continue
        first, end = [v for _, v in vals[:kq]], [v for _, v in vals[-kq:]]
        lines.append(f"| {label} | {_num(sum(first) / len(first))} | {_num(sum(end) / len(end))} |")
    return "\n".join(lines) + "\n"


def report(run_dir: Path, out: Path | None = None, overwrite: bool = False) -> tuple[Path, Path]:
    """Write report.png and report.md into `out` (default RUN_DIR/report, which holds only these two files, derived
    from the run and rewritten each time). Returns their paths.

    Raises:
        UserError: `run_dir` has no metrics.jsonl, or an explicit `out` already holds a report and not `overwrite`.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").exists():
        from rlvr.errors import UserError

        raise UserError(f"'{run_dir}' has no metrics.jsonl: pass the run_dir of a `rlvr train` run")
    if out is not None and not overwrite and any((Path(out) / f).exists() for f in ("report.png", "report.md")):
        from rlvr.errors import UserError

        raise UserError(f"--out '{out}' already holds a report (report.md / report.png); choose a new folder or pass "
                        f"--overwrite")
    out = Path(out) if out is not None else run_dir / "report"  # its own folder: two files derived from the run
    png = plot(run_dir, out)
    md = out / "report.md"
    md.write_text(markdown(run_dir, png))
    return png, md

