"""The docs document every recipe option with the defaults the code uses; README names the commands CI runs."""

from pathlib import Path

from rlvr.config import reference_markdown


def test_option_table_is_current():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "options.md").read_text()
    assert reference_markdown() in doc, "regenerate the option table: `python scripts/sync_readme_options.py`"


def test_readme_names_the_commands_ci_runs():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert "bash scripts/install.sh" in readme and "rlvr train recipes/basic_arithmetic.yaml" in readme
    assert "python -m pytest -q" in readme and "pytest -q" in (root / ".ci" / "run").read_text()
