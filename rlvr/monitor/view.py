"""`rlvr monitor RUN_DIR`: a live terminal view of a running (or finished) run, drawn with rich.

It reads RUN_DIR/metrics.jsonl and RUN_DIR/alerts.jsonl (both appended and flushed every step by the trainer), so
it works from another terminal while training runs, and on a finished run. It shows the latest value of each
quantity with its 95% interval where there is one, a sparkline of the last values, the state of each rule, and the
active and past alerts.

A value whose rule lacks its evidence minimum (a pooled closure-ratio window with fewer than
`monitor.min_informative_groups` informative groups, a reference sensitivity on fewer than
`monitor.min_intervention_passes` re-scored passes) is shown as "undetermined", never as a number that reads as
"closed": the rule neither fires nor clears on it (rlvr/monitor/monitor.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rlvr.metrics import read_metrics
from rlvr.monitor.alerts import read_alerts

# (label, metrics key, what it means); keys absent from a run are skipped
QUANTITIES = [
    ("reward", "reward", "mean training reward"),
    ("held-out pass@1", "eval/pass@1", "greedy, reference verifier"),
    ("reference pass@1 (rollouts)", "monitor/reference_pass@1", "reference verifier on training completions"),
    ("reward-gold gap", "monitor/reward_gold_gap", "reward minus reference pass@1"),
    ("informative groups", "monitor/informative_group_frac", "groups with differing verdicts"),
    ("signal entropy H_t", "monitor/signal_entropy", "bits per sample"),
    ("novel bits N_t", "monitor/novel_bits", "H(S | S_hat, Q), bits"),
    ("closure ratio", "monitor/closure_ratio", "N_t / H_t, this step"),
    ("closure ratio (window)", "monitor/closure_ratio_window", "pooled over the alert window"),
    ("ref. sensitivity (window)", "monitor/reference_sensitivity_window",
     "share of passed verdicts a swapped reference changes"),
    ("class efficiency", "monitor/class_efficiency", "1: verdict depends on the answer only"),
    ("distinct answers/group", "monitor/distinct_per_group", ""),
    ("policy entropy", "monitor/policy_entropy", "nats per token"),
    ("pass@1", "monitor/pass@1", "training reward > 0.5"),
    ("pass@G", "monitor/pass@G", ""),
    ("verifier errors", "monitor/error_rate", ""),
    ("verifier timeouts", "monitor/timeout_rate", ""),
    ("constant verdicts", "monitor/constant_verdict_rate", "same positive score for different answers"),
]

_BLOCKS = "▁▂▃▄▅▆▇█"


# value key -> (evidence key, MonitorConfig field with the evidence minimum, what the evidence counts)
GATED = {
    "monitor/closure_ratio_window": ("monitor/window_informative_groups", "min_informative_groups",
                                     "informative groups"),
    "monitor/reference_sensitivity_window": ("monitor/intervention_passes_window", "min_intervention_passes",
                                             "re-scored passes"),
}


def monitor_config(run_dir: Path):
    """The run's MonitorConfig (RUN_DIR/config.yaml's `monitor` section; defaults for keys it lacks or when it is
    missing or unreadable)."""
    from rlvr.config import MonitorConfig

    p = Path(run_dir) / "config.yaml"
    try:
        import yaml

        sec = (yaml.safe_load(p.read_text()) or {}).get("monitor") or {} if p.exists() else {}
        return MonitorConfig(**{k: v for k, v in sec.items() if k in MonitorConfig.model_fields})
    except Exception:  # noqa: BLE001 - a view must draw even on an odd config
        return MonitorConfig()


def undetermined(row: dict, key: str, mcfg, short: bool = False) -> str | None:
    """Why `key`'s value at this metrics row cannot be judged by its rule ("2 of 8 informative groups"), or None
    when it can. Only evidence-gated quantities (GATED) are ever undetermined; a row of a run written before the
    evidence count was logged is judged by its value alone (undefined: "not defined")."""
    if key not in GATED:
        return None
    ev_key, field, what = GATED[key]
    need = getattr(mcfg, field)
    if ev_key in row:
        n = row.get(ev_key)
        if not _finite(n) or n < need:
            n = int(n) if _finite(n) else 0
            return f"{n}/{need} {what.split()[-1]}" if short else f"{n} of {need} {what}"
    if not _finite(row.get(key)):
        return "not defined"
    return None


def determined_series(rows: list[dict], key: str, mcfg) -> list[float | None]:
    """`key` per row, None where its rule is undetermined (so a sparkline or a plot never shows it as a value)."""
    return [None if undetermined(r, key, mcfg) else r.get(key) for r in rows]


def rule_states(rows: list[dict], spans: list[dict], mcfg, short: bool = False) -> list[dict]:
    """The state of each threshold rule at the latest step: rule, severity, threshold, statistic, evidence, and
    state: "ACTIVE" (its alert is active), "undetermined: <why>", "condition holds" or "ok". Rules whose
    statistic the run does not log are left out."""
    if not rows:
        return []
    last = rows[-1]
    active = {(s["name"], s["rule"]) for s in spans if s["cleared"] is None}

    def ok(v):
        return _finite(v)

    out = []

    def add(name, rule, sev, key, thr, holds, why=None, evidence=""):
        if key not in last and not any(key in r for r in rows):
            return
        v = last.get(key)
        state = ("ACTIVE" if (name, rule) in active else f"undetermined: {why}" if why
                 else "condition holds" if holds else "ok")
        und = state.startswith("undetermined")  # no value is reported for it (a 0.000 would read "closed")
        out.append({"name": name, "rule": rule, "severity": sev, "threshold": thr, "statistic": key,
                    "value": None if und or not ok(v) else v, "raw_value": v if ok(v) else None,
                    "evidence": evidence, "state": state})

    cr, rsw = last.get("monitor/closure_ratio_window"), last.get("monitor/reference_sensitivity_window")
    passes = last.get("monitor/intervention_passes_window")
    why_rs = undetermined(last, "monitor/reference_sensitivity_window", mcfg, short)
    depends = why_rs is None and ok(rsw) and rsw > mcfg.reference_sensitivity_min
    why_cr = None if depends else undetermined(last, "monitor/closure_ratio_window", mcfg, short)
    n = last.get("monitor/window_informative_groups")
    add("CLOSED_LOOP", "closure_ratio", "warning", "monitor/closure_ratio_window",
        f"< {mcfg.closure_ratio_min} (needs >= {mcfg.min_informative_groups} informative groups)",
        (not depends) and ok(cr) and cr < mcfg.closure_ratio_min, why_cr,
        (f"{int(n)} informative groups" if ok(n) else "")
        + ("; reference sensitivity > min: not closed" if depends else ""))
    add("CLOSED_LOOP", "reference_blind", "critical", "monitor/reference_sensitivity_window",
        f"<= {mcfg.reference_sensitivity_min} (needs >= {mcfg.min_intervention_passes} re-scored passes)",
        ok(rsw) and rsw <= mcfg.reference_sensitivity_min, why_rs,
        f"{int(passes)} re-scored passes" if ok(passes) else "")
    inf = last.get("monitor/informative_group_frac")
    add("NO_SIGNAL", "informative_groups", "warning", "monitor/informative_group_frac",
        f"<= {mcfg.no_signal_max}", ok(inf) and inf <= mcfg.no_signal_max, None if ok(inf) else "not defined")
    for key, sev, thr in (("error_rate", "critical", mcfg.error_rate_max),
                          ("timeout_rate", "critical", mcfg.timeout_rate_max),
                          ("constant_verdict_rate", "warning", mcfg.constant_verdict_max)):
        v = last.get(f"monitor/{key}")
        add("VERIFIER_FAULT", key, sev, f"monitor/{key}", f"> {thr}", ok(v) and v > thr,
            None if ok(v) else "not defined")
    return out


def sparkline(values: list[float | None], width: int = 24) -> str:
    """Unicode sparkline of the last `width` values (gaps for missing ones), scaled to their own min..max."""
    vals = values[-width:]
    finite = [v for v in vals if _finite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not _finite(v):
            out.append(" ")
        else:
            out.append(_BLOCKS[0] if span == 0 else _BLOCKS[min(7, int((v - lo) / span * 7.999))])
    return "".join(out)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v) -> str:
    return f"{v:.3f}" if _finite(v) else "-"


def quantity_keys(rows: list[dict]) -> list[tuple[str, str, str]]:
    present = {k for r in rows for k in r}
    spurious = sorted(k for k in present if k.startswith("monitor/spurious_share/"))
    out = [q for q in QUANTITIES if q[1] in present]
    at = next((i for i, q in enumerate(out) if q[1] == "monitor/class_efficiency"), len(out) - 1) + 1
    extra = [(f"spurious share: {k.rsplit('/', 1)[1]}", k, "I(S; f | Q) / H(S | Q)") for k in spurious]
    return out[:at] + extra + out[at:]


def alert_spans(alerts: list[dict]) -> list[dict]:
    """Fired/cleared events -> one span per firing: name, rule, severity, fired, cleared (None: still active),
    evidence and action of the firing."""
    spans, open_ = [], {}
    for a in alerts:
        key = (a["name"], a["rule"])
        if a["event"] == "fired":
            open_[key] = {"name": a["name"], "rule": a["rule"], "severity": a["severity"], "fired": a["step"],
                          "cleared": None, "evidence": a.get("evidence", {}), "action": a.get("action", "")}
            spans.append(open_[key])
        elif a["event"] == "cleared" and key in open_:
            open_.pop(key)["cleared"] = a["step"]
    return spans


COMPACT_BELOW = 120  # terminal columns under which the compact layout is used


def render(run_dir: Path, width: int = 24, columns: int | None = None):
    """The whole view as one rich renderable, laid out for a terminal of `columns` (None: the wide layout).

    Below COMPACT_BELOW columns (an 80-column terminal) the view drops the `meaning` column, shortens the sparkline
    to 12 steps, and prints each alert on two lines (name, rule, severity, steps; then its evidence, wrapped), so
    every number stays whole instead of being cut to `0.3…`."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    spans = alert_spans(read_alerts(run_dir))
    done = _finished(run_dir)
    last = rows[-1]["step"] if rows else 0
    name = run_dir.name
    cfg_path = run_dir / "config.yaml"
    total = None
    if cfg_path.exists():
        import yaml

        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        name = cfg.get("name", name)
        total = (cfg.get("train") or {}).get("steps")
    status = "finished" if done else "running"
    head = Text(f"{name}  |  step {last}/{total or '?'}  |  {status}  |  {run_dir}", style="bold")

    compact = columns is not None and columns < COMPACT_BELOW
    if compact:
        width = min(width, 12)
    table = Table(show_edge=False, pad_edge=False, expand=False)
    cols = [("quantity", "left"), ("latest", "right"), ("95% CI", "right"), (f"last {width} steps", "left")]
    for col, just in cols + ([] if compact else [("meaning", "left")]):
        table.add_column(col, justify=just, no_wrap=col not in ("meaning", "quantity"),
                         overflow="fold" if col == "quantity" else "ellipsis")
    mcfg = monitor_config(run_dir)
    for label, key, meaning in quantity_keys(rows):
        series = determined_series(rows, key, mcfg)  # undetermined windows are gaps, not values
        defined = [v for v in series if _finite(v)]
        # the latest step's value ("-" when this step cannot define it); held-out accuracy: the latest eval
        at = (next((r for r in reversed(rows) if _finite(r.get(key))), {}) if key == "eval/pass@1"
              else (rows[-1] if rows else {}))
        latest, lo, hi = at.get(key), at.get(key + "_lo"), at.get(key + "_hi")
        why = undetermined(at, key, mcfg, short=compact) if at else None
        ci = f"[{_num(lo)}, {_num(hi)}]" if _finite(lo) and _finite(hi) else ""
        if why:  # the rule cannot judge this value: say so instead of printing a number that reads as "closed"
            # compact: the word goes in the (wider) interval column and the reason in the rules panel, so the
            # labels keep their width at 80 columns
            latest, ci = ("-", "undetermined") if compact else ("undetermined", why)
        else:
            latest = _num(latest)
        cells = [label, latest, ci, sparkline(series if key != "eval/pass@1" else defined, width)]
        table.add_row(*cells, *([] if compact else [meaning]))
    rules = _rules_table(rule_states(rows, spans, mcfg, short=compact), compact)

    active = [s for s in spans if s["cleared"] is None]
    if compact:
        alerts = _compact_alerts(spans)
    else:
        alerts = _wide_alerts(spans)
    title = f"alerts: {len(active)} active, {len(spans) - len(active)} cleared" if spans else "alerts: none"
    parts = [head, Panel(table, title="quantities")]
    if rules is not None:
        parts.append(Panel(rules, title="rules at the latest step"))
    parts.append(Panel(alerts if spans else Text("no alert has fired"), title=title))
    if active:
        parts.append(Text("what to do: " + " | ".join(f"{s['name']}: {s['action']}" for s in active[:2]),
                          style="italic"))
    return Group(*parts)


def _rules_table(states: list[dict], compact: bool):
    """One row per rule: alert (rule), severity, latest statistic, threshold, state (undetermined says why)."""
    if not states:
        return None
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False)
    cols = ["rule", "severity", "value", "state"] + ([] if compact else ["threshold"])
    for col in cols:
        t.add_column(col, justify="right" if col == "value" else "left",
                     no_wrap=col in ("severity", "value"), overflow="fold")
    for r in states:
        style = ("bold red" if r["severity"] == "critical" else "yellow") if r["state"] == "ACTIVE" else (
            "dim" if r["state"].startswith("undetermined") else "")
        value = "-" if r["state"].startswith("undetermined") else _num(r["value"])  # the state says why
        t.add_row(f"{r['name']} ({r['rule']})", r["severity"], value, r["state"],
                  *([] if compact else [r["threshold"]]), style=style)
    return t


def _evidence(s: dict) -> str:
    from rlvr.monitor.alerts import evidence_text

    return evidence_text(s["evidence"])


def _order(spans):
    return sorted(spans, key=lambda s: (s["cleared"] is not None, s["fired"]))


def _style(s: dict) -> str:
    return {"critical": "bold red", "warning": "yellow"}.get(s["severity"], "") if s["cleared"] is None else "dim"


def _compact_alerts(spans: list[dict]):
    """Two lines per alert: `● NAME (rule) severity, fired N, active|cleared M`, then the evidence, wrapped."""
    from rich.text import Text

    out = Text()
    for i, s in enumerate(_order(spans)):
        mark = "●" if s["cleared"] is None else "○"
        state = "active" if s["cleared"] is None else f"cleared {s['cleared']}"
        out.append(f"{mark} {s['name']} ({s['rule']}) {s['severity']}, fired {s['fired']}, {state}\n", style=_style(s))
        out.append(f"  {_evidence(s)}" + ("\n" if i < len(spans) - 1 else ""), style="dim" if s["cleared"] else "")
    return out


def _wide_alerts(spans: list[dict]):
    from rich.table import Table

    alerts = Table(show_edge=False, pad_edge=False)
    for col in ("", "alert", "rule", "severity", "fired", "cleared", "evidence"):
        alerts.add_column(col, no_wrap=col not in ("evidence",))
    for s in _order(spans):
        mark = "●" if s["cleared"] is None else "○"
        alerts.add_row(mark, s["name"], s["rule"], s["severity"], str(s["fired"]),
                       "active" if s["cleared"] is None else str(s["cleared"]), _evidence(s), style=_style(s))
    return alerts


def _finished(run_dir: Path) -> bool:
    """summary.json written after the last metrics line (a resumed run may still have its previous summary)."""
    summary, metrics = run_dir / "summary.json", run_dir / "metrics.jsonl"
    if not summary.exists():
        return False
    return not metrics.exists() or summary.stat().st_mtime_ns >= metrics.stat().st_mtime_ns


def watch(run_dir: Path, once: bool = False, interval: float = 2.0, console=None) -> int:
    """Print one snapshot (`once`) or redraw every `interval` seconds while metrics.jsonl grows, until the run
    writes summary.json (then one last frame) or Ctrl-C."""
    from rich.console import Console
    from rich.live import Live

    run_dir = Path(run_dir)
    console = console or Console()
    if not run_dir.is_dir():
        from rlvr.errors import UserError

        raise UserError(f"run directory '{run_dir}' not found: pass the run_dir of a `rlvr train` run")
    if once:
        console.print(render(run_dir, columns=console.width))
        return 0
    seen = None
    with Live(render(run_dir, columns=console.width), console=console, refresh_per_second=4) as live:
        try:
            while True:
                stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in
                              (run_dir / "metrics.jsonl", run_dir / "alerts.jsonl", run_dir / "summary.json"))
                if stamp != seen:
                    live.update(render(run_dir, columns=console.width))
                    seen = stamp
                if _finished(run_dir):
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
    return 0


def latest_json(run_dir: Path) -> dict:
    """The latest value of every quantity plus the alert spans, as a dict (for scripts)."""
    rows = read_metrics(run_dir)
    mcfg = monitor_config(run_dir)
    latest, und = {}, {}
    for _, key, _ in quantity_keys(rows):
        vals = [r.get(key) for r in rows if _finite(r.get(key))]
        latest[key] = vals[-1] if vals else None
        why = undetermined(rows[-1], key, mcfg) if rows else None
        if why:  # the latest step's rule cannot judge it: "undetermined", not the last value it had
            latest[key], und[key] = "undetermined", why
    spans = alert_spans(read_alerts(run_dir))
    return {"step": rows[-1]["step"] if rows else 0, "latest": latest, "undetermined": und,
            "rules": rule_states(rows, spans, mcfg), "alerts": spans}

