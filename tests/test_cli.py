"""Bad input exits with status 2 and one line naming the field, the value and what is expected."""

import json
import subprocess
import sys

import pytest

from rlvr.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture()
def recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("train: {steps: 1}\n")
    return str(p)


def test_missing_recipe(capsys):
    code, err = _run(capsys, "train", "does/not/exist.yaml")
    assert code == 2 and err == "rlvr: error: recipe 'does/not/exist.yaml' not found: pass a YAML file, e.g. " \
                                "recipes/basic_arithmetic.yaml"


def test_unknown_key_lists_known_keys(capsys, recipe):
    code, err = _run(capsys, "train", recipe, "train.stepz=3")
    assert code == 2 and "unknown key 'train.stepz'" in err and "steps" in err and "\n" not in err


def test_wrong_type(capsys, recipe):
    code, err = _run(capsys, "train", recipe, "train.steps=abc")
    assert code == 2 and "field 'train.steps' = 'abc'" in err and "integer" in err and "\n" not in err


def test_group_size_below_two(capsys, recipe):
    code, err = _run(capsys, "train", recipe, "train.group_size=1")
    assert code == 2 and "field 'train.group_size' = 1" in err and "greater than or equal to 2" in err


def test_bad_yaml_and_bad_override_syntax(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    code, err = _run(capsys, "train", str(bad))
    assert code == 2 and "not valid YAML" in err
    code, err = _run(capsys, "train", str(bad).replace("bad", "x"), "no_equals_sign")
    assert code == 2


def test_dataset_without_required_column(capsys, recipe, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "1+1", "answer": "2"}) + "\n")
    code, err = _run(capsys, "train", recipe, "data.task=null", f"data.path={data}", f"run_dir={tmp_path / 'run'}")
    assert code == 2 and "missing column 'reference' (data.reference_column)" in err and "\n" not in err


def test_model_path_that_does_not_exist(capsys, recipe, tmp_path):
    code, err = _run(capsys, "train", recipe, "model=./no/such/model", "data.train_size=4", "data.eval_size=0",
                     f"run_dir={tmp_path / 'run'}")
    assert code == 2 and err.startswith("rlvr: error: model './no/such/model': path does not exist")


def test_unknown_verifier_is_named(capsys, recipe, tmp_path):
    code, err = _run(capsys, "train", recipe, "verifiers=[{name: nope}]", "data.train_size=4",
                     f"run_dir={tmp_path / 'run'}")
    assert code == 2 and "nope" in err and "math" in err


def test_exit_status_and_no_traceback_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "rlvr", "train", "missing.yaml"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["rlvr: error: recipe 'missing.yaml' not found: pass a YAML file, "
                                                "e.g. recipes/basic_arithmetic.yaml"]
    debug = subprocess.run([sys.executable, "-m", "rlvr", "--debug", "train", "missing.yaml"],
                           capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_shipped_recipes_validate():
    from pathlib import Path

    from rlvr.config import load_config

    root = Path(__file__).resolve().parents[1] / "recipes"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert "basic_arithmetic.yaml" in names
    for p in root.glob("*.yaml"):
        cfg = load_config(p)
        assert cfg.name == p.stem


def test_bad_inputs_script_checks_the_contract_in_a_real_process():
    """scripts/bad_inputs.py (README's table) runs each case as a user would; three of its cases, end to end: exit 2,
    one line, no traceback, every file's hash unchanged (the second run into a finished run dir among them)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bad_inputs.py"
    spec = importlib.util.spec_from_file_location("bad_inputs", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cases = {what: (argv, files) for what, argv, files in mod.CASES}
    assert len(cases) >= 20
    for what in ("second run into a finished run dir", "misspelt key in an override", "run_dir that is a file"):
        r = mod.run_case(*cases[what])
        assert r["status"] == 2 and r["stderr_lines"] == 1 and not r["traceback"] and r["disk_unchanged"], (what, r)
    r = mod.run_case(*cases["second run into a finished run dir"])
    assert "already holds a run (3 steps logged, finished)" in r["message"]
