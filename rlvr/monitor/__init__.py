"""The info-gain monitor (issue 6): per-step estimates of how much task information the reward carries beyond
the model itself, and alerts when the loop closes, loses its signal, rewards a surface feature or collapses.

- :mod:`rlvr.monitor.estimators`: the quantities, as pure functions (formulas, bias, sample size in docstrings);
- :mod:`rlvr.monitor.alerts`: alert events, the window logic, alerts.jsonl;
- :mod:`rlvr.monitor.monitor`: :class:`Monitor`, which the trainer and the TRL callback feed once per step;
- :mod:`rlvr.monitor.view` and :mod:`rlvr.monitor.report`: ``rlvr monitor RUN_DIR`` and ``rlvr report RUN_DIR``.
"""

from rlvr.monitor.alerts import NAMES, Alert, read_alerts
from rlvr.monitor.monitor import Monitor, Signal, signals_from_verifiers

__all__ = ["NAMES", "Alert", "Monitor", "Signal", "read_alerts", "signals_from_verifiers"]
