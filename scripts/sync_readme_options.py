"""Rewrite docs/options.md's option table from rlvr.config (the block from `| key | default | meaning |` to the last
table row). tests/test_docs.py checks docs/options.md contains it exactly; run this after changing a config field."""

from pathlib import Path

from rlvr.config import reference_markdown

doc = Path(__file__).resolve().parents[1] / "docs" / "options.md"
text = doc.read_text()
start = text.index("| key | default | meaning |")
end = start
lines = text[start:].splitlines(keepends=True)
for ln in lines:
    if not ln.startswith("|"):
        break
    end += len(ln)
doc.write_text(text[:start] + reference_markdown().rstrip("\n") + "\n" + text[end:])
