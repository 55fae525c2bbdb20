"""A user's own verifier as a package with an entry point (tests/plugin_example), found by get_verifier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from verifiers import SignalSpec, Verifier, get_verifier, list_verifiers
from verifiers.integrations.trl import reward_func
from verifiers.registry import ENTRY_POINT_GROUP

EXAMPLE = Path(__file__).parent / "plugin_example"
REPO = Path(__file__).resolve().parents[1]


def _expose_with_dist_info(target: Path) -> None:
    """What `pip install` leaves behind, built from the example's pyproject.toml: the package and a
    dist-info folder whose entry_points.txt carries the `rlvr.verifiers` group."""
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copytree(EXAMPLE / "rlvr_plugin_example", target / "rlvr_plugin_example")
    dist = target / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
             for group, eps in meta["entry-points"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines))


@pytest.fixture()
def plugin_on_path(tmp_path, monkeypatch):
    _expose_with_dist_info(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rlvr_plugin_example", raising=False)
    yield tmp_path


def test_example_declares_the_entry_point():
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert meta["entry-points"][ENTRY_POINT_GROUP] == {"numeric_tolerance": "rlvr_plugin_example:ToleranceVerifier"}


def test_plugin_is_found_by_entry_point_name(plugin_on_path):
    assert "numeric_tolerance" in list_verifiers()
    v = get_verifier("numeric_tolerance", rel_tol=0.05)
    assert isinstance(v, Verifier) and type(v).__name__ == "ToleranceVerifier" and v.name == "numeric_tolerance"
    assert v.signal == SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")
    exact, close, far = v.verify_batch([("<answer>100</answer>", 100), ("<answer>104</answer>", 100),
                                        ("<answer>170</answer>", 100)])
    assert (exact.score, exact.passed) == (1.0, True)
    assert (close.score, close.passed) == (1.0, True)  # within 5 %
    assert (far.score, far.passed) == (0.0, False)


def test_plugin_by_import_path_and_graded_scores(plugin_on_path):
    v = get_verifier("rlvr_plugin_example:ToleranceVerifier", rel_tol=0.01)
    verdict = v.verify("The answer is 105.", 100)  # 5 % off: between 1 % (score 1) and 10 % (score 0)
    assert verdict.passed is False and 0.0 < verdict.score < 1.0
    assert verdict.score == pytest.approx(1 - (0.05 - 0.01) / 0.09)


def test_plugin_never_raises_into_the_caller(plugin_on_path):
    v = get_verifier("numeric_tolerance")
    bad_reference = v.verify("<answer>1</answer>", "not a number")
    assert bad_reference.score == 0.0 and bad_reference.error.startswith("ValueError")
    assert v.verify(None, 1).error.startswith("TypeError")
    with pytest.raises(ValueError):
        get_verifier("numeric_tolerance", rel_tol=0)


def test_plugin_through_the_trl_adapter(plugin_on_path):
    reward = reward_func("numeric_tolerance", reference_column="answer", rel_tol=0.1)
    assert reward.__name__ == "numeric_tolerance"
    assert reward(prompts=["q1", "q2"], completions=["<answer>10</answer>", "<answer>30</answer>"],
                  answer=["10.5", "10"]) == [1.0, 0.0]


def test_plugin_installed_with_pip_into_a_target_folder(tmp_path):
    """The real thing: `pip install` of the example (offline, no build isolation) into a fresh folder, then a
    new interpreter that has only that folder and rlvr on its path finds the verifier by its entry point."""
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source)  # build in a copy: setuptools writes build/ and *.egg-info next to the source
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    assert list(target.glob("rlvr_plugin_example-0.1.0.dist-info/entry_points.txt"))
    probe = (
        "import json; from verifiers import get_verifier, list_verifiers;"
        "v = get_verifier('numeric_tolerance', rel_tol=0.01);"
        "d = v.verify('<answer>3.14159</answer>', 3.1416);"
        "print(json.dumps({'listed': 'numeric_tolerance' in list_verifiers(), 'cls': type(v).__module__,"
        " 'passed': d.passed}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO)])}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"listed": True, "cls": "rlvr_plugin_example",
                                                               "passed": True}


_NO_RLVR = '''
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "rlvr" or name.startswith("rlvr."):
            raise ImportError("rlvr is blocked in this test")
sys.meta_path.insert(0, _Block())
from verifiers import get_verifier, list_verifiers
model = sys.argv[1]
built = {}
for name in list_verifiers():
    kw = {}
    if name == "rubric":
        kw = {"criteria": [{"judge": "Is it correct?"}], "judge": {"model": model, "device": "cpu"}}
    elif name == "length_bonus":
        kw = {"unit": "tokens", "tokenizer": model, "cap": 8}
    elif name == "prompt_split":
        kw = {"even": "math", "odd": "length_bonus"}
    v = get_verifier(name, **kw)
    built[name] = v.verify("<answer>12</answer>", "12", prompt="Calculate 7 + 5.")
    getattr(v, "close", lambda: None)()
assert built["math"].score == 1.0 and 0 < built["length_bonus"].score <= 1, built
assert built["rubric"].error is None, built["rubric"]
assert not any(m.startswith("rlvr") for m in sys.modules), sorted(m for m in sys.modules if m.startswith("rlvr"))
print("ok", len(built))
'''


def test_every_builtin_verifier_works_without_rlvr(tiny_model_dir):
    """The verifier package is what users plug into TRL: it must import and judge with rlvr absent (a local judge
    and a token-length tokenizer given as HF folders included)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NO_RLVR, tiny_model_dir], capture_output=True, text=True,
                         timeout=300, cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr[-3000:]


def test_verifiers_never_import_rlvr_and_resolve_aliases_through_the_entry_point():
    """The design card: `verifiers/` must not import `rlvr` (it is usable on its own, e.g. in TRL). rlvr's model
    aliases reach it through the entry-point group verifiers.model_resolvers instead."""
    import ast
    from pathlib import Path

    from verifiers.registry import resolve_model_path

    root = Path(__file__).resolve().parents[1] / "verifiers"
    offenders = []
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{f.relative_to(root)}: {n}" for n in names if n == "rlvr" or n.startswith("rlvr.")]
    assert offenders == []
    from rlvr.models import resolve_model

    assert resolve_model_path("smollm2-135m-instruct") == resolve_model("smollm2-135m-instruct")
