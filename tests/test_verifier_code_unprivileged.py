"""The code verifier's attack tests again, as an ordinary user.

CI runs as root, and several containments used to hold only because of that (the sandbox kept the host's uid 0, so
capability checks refused what an ordinary user's sandbox could do to the trainer's processes). Users run as
ordinary users: this file re-runs every attack file, in both tiers, as uid/gid 65534 with no supplementary groups
and no capabilities (`setpriv`), from a root test process. It skips, saying why, when the test process is not root
(the attack files then run as that user directly) or when `setpriv`/`unshare` are missing.

The interpreter may live where uid 65534 cannot reach it (pyenv under /root, mode 0700): the run happens in a
private mount namespace where each such folder is covered by an empty tmpfs into which only the interpreter's and
the virtualenv's folders are bound back. Nothing else of the host changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UID = 65534
ATTACK_FILES = ["tests/test_verifier_code_attacks.py", "tests/test_verifier_code_attacks2.py",
                "tests/test_verifier_code_attacks3.py", "tests/test_verifier_code_attacks4.py"]

_SETUP = r"""
import os, subprocess, sys, tempfile
blocked = {blocked!r}
for top, subs in blocked.items():
    stash = []
    for sub in subs:
        d = tempfile.mkdtemp(prefix="rlvr-stash-")
        subprocess.run(["mount", "--bind", sub, d], check=True)
        stash.append((sub, d))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", top], check=True)
    for sub, d in stash:
        os.makedirs(sub, exist_ok=True)
        subprocess.run(["mount", "--move", d, sub], check=True)
        os.rmdir(d)
os.execvp("setpriv", ["setpriv", "--reuid={uid}", "--regid={uid}", "--clear-groups", "--inh-caps=-all",
                      "--bounding-set=-all", "--"] + sys.argv[1:])
"""


def _blocked_ancestors(paths: list[str]) -> dict[str, list[str]]:
    """{highest folder that `others` cannot traverse: [the needed paths beneath it]}."""
    out: dict[str, list[str]] = {}
    for p in paths:
        parts = os.path.realpath(p).split("/")
        for i in range(2, len(parts)):
            d = "/".join(parts[:i])
            if os.path.isdir(d) and not os.stat(d).st_mode & 0o001:
                out.setdefault(d, [])
                if p not in out[d]:
                    out[d].append(os.path.realpath(p))
                break
    return out


@pytest.mark.parametrize("path", ATTACK_FILES)
def test_attack_files_as_an_unprivileged_user(path):
    if os.geteuid() != 0:
        pytest.skip("not root: the attack files already run as this (unprivileged) user")
    for tool in ("setpriv", "unshare", "mount"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed: cannot drop to uid {UID} for the attack files")
    base = tempfile.mkdtemp(prefix="rlvr-unpriv-", dir="/tmp")
    try:
        home = os.path.join(base, "home")
        os.mkdir(home)
        for d in (base, home):
            os.chown(d, UID, UID)
        interp = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
        need = [sys.base_prefix, sys.prefix, os.path.dirname(interp), REPO]
        setup = _SETUP.format(blocked=_blocked_ancestors(need), uid=UID)
        env = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin:/usr/sbin:/sbin", "HOME": home,
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        inner = ["sh", "-c", 'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; exec "$@"', "sh",
                 sys.executable, "-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider", "--noconftest",
                 f"--basetemp={os.path.join(base, 'pytest')}", path]
        cmd = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c", setup, *inner]
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        out = r.stdout + r.stderr
        assert r.stdout.startswith(f"uid={UID} gid={UID} groups={UID}\n"), out[-3000:]
        assert r.returncode == 0, out[-6000:]
        assert " passed" in out and " failed" not in out, out[-3000:]
    finally:
        shutil.rmtree(base, ignore_errors=True)
