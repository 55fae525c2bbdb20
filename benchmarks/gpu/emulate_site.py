"""Build a site folder holding only what the GPU machine has: the packages of its image (KINDS.md, listed in
bench.GPU_MACHINE_PACKAGES) and the wheels of benchmarks/gpu/wheels.txt, as symbolic links to this machine's installed
copies. `run.sh --emulate-gpu-site` runs the check with `python -S` and this folder on PYTHONPATH, so an import of
anything the GPU machine lacks (gguf, reasoning-gym, vllm, math-verify, ...) fails here as it would there.

Versions are this machine's, not the GPU machine's (torch 2.11, transformers 5.17 there): this checks which packages
are needed, not version compatibility. Prints the folder's path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wanted() -> set[str]:
    from bench import GPU_MACHINE_PACKAGES

    names = {_norm(n) for n in GPU_MACHINE_PACKAGES}
    for line in (HERE / "wheels.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_norm(re.split(r"[=<>!~ ]", line, maxsplit=1)[0]))
    return names


def with_requirements(names: set[str]) -> set[str]:
    """`names` and, transitively, the installed dependencies (not extras) of each: this machine's newer versions can
    need packages the GPU machine's older ones did not (huggingface-hub 2.x needs httpx2), and every package there is
    installed with its dependencies."""
    dists = {_norm(d.metadata["Name"]): d for d in md.distributions() if d.metadata["Name"]}
    todo, seen = [n for n in names if n in dists], set(names)
    while todo:
        for req in dists[todo.pop()].requires or []:
            if "extra ==" in req or 'extra=="' in req:
                continue
            dep = _norm(re.split(r"[\[=<>!~;( ]", req.strip(), maxsplit=1)[0])
            if dep not in seen:
                seen.add(dep)
                if dep in dists:
                    todo.append(dep)
    return seen


def build(dest: Path | None = None) -> Path:
    names = with_requirements(wanted())
    key = hashlib.sha256(("\n".join(sorted(names)) + sys.prefix).encode()).hexdigest()[:10]
    # "site-packages" in the path: dill (datasets fingerprints) pickles modules outside such folders by value
    dest = dest or Path(os.environ.get("TMPDIR", "/tmp")) / f"rlvr-emulated-gpu-{key}" / "site-packages"
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if not name or _norm(name) not in names:
            continue
        base = Path(dist.locate_file(""))
        tops = set()
        for f in dist.files or []:
            parts = Path(f).parts
            if not parts or parts[0].startswith("..") or parts[0] == "__pycache__" or parts[0].endswith(".pth"):
                continue
            if parts[0] in ("bin",):
                continue
            tops.add(parts[0])
        for top in tops:
            src, link = base / top, dest / top
            if src.exists() and not link.exists() and not link.is_symlink():
                link.symlink_to(src)
    (dest / ".complete").write_text("\n".join(sorted(names)))
    return dest


if __name__ == "__main__":
    print(build())
