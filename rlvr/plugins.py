"""Loading the reward's verifiers, plug-ins included, with errors a newcomer can act on.

A plug-in is a `Verifier` subclass named `module:Class` in the recipe (`verifiers: [{name: my_verifiers:Within10}]`).
The module is imported as `python -m` would import it: from the current folder first, then installed packages
(rlvr/cli.py puts the current folder on sys.path). Every failure is a ConfigError (exit status 2, one line) that
names the recipe field, the file and line where the plug-in went wrong, and the fix:

    module not found        -> where it was looked for; put my_verifiers.py in the current folder or pip install it
    syntax error, or an     -> file:line and the exception
      exception at import
    attribute not found     -> the classes the module does define
    not a Verifier subclass -> what it is
    _verify without prompt  -> the exact signature to write (README, "Your own verifier")
    constructor raised      -> the exception and the kwargs given
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback

from rlvr.errors import ConfigError

VERIFY_SIGNATURE = "def _verify(self, completion: str, reference, *, prompt: str | None) -> Verdict"


def build_reward(refs):
    """The training reward of `verifiers:` (VerifierRef list): instances, weights and deadlines. Each verifier is
    keyed by its own `name` attribute (metric keys `rewards/<name>/*`, canary rules `canary:<name>`); a second
    verifier of the same name gets `<name>#2`.

    Raises:
        ConfigError: a verifier cannot be found, imported, checked or constructed (see the module docstring).
    """
    from rlvr.scoring import Reward, VerifierSpec

    specs, seen = [], {}
    for i, r in enumerate(refs):
        v = load_verifier(r.name, r.kwargs, field=f"verifiers[{i}].name")
        name = str(getattr(v, "name", r.name))
        seen[name] = seen.get(name, 0) + 1
        specs.append(VerifierSpec(name if seen[name] == 1 else f"{name}#{seen[name]}", v, r.weight, r.timeout_s))
    return Reward(specs)


def load_verifier(spec: str, kwargs: dict | None = None, field: str = "verifier"):
    """One verifier instance from a registered name, `module:Class` or an entry point (verifiers.get_verifier),
    checked for the `_verify` signature. Raises ConfigError naming `field`, the file:line and the fix."""
    from verifiers import Verifier, get_verifier

    kwargs = dict(kwargs or {})
    module_name = spec.partition(":")[0] if ":" in spec else None
    try:
        v = get_verifier(spec, **kwargs)
    except KeyError as e:
        raise ConfigError(f"{field} = '{spec}': {e.args[0] if e.args else e}") from None
    except ModuleNotFoundError as e:
        if module_name and e.name and module_name.split(".")[0] == e.name.split(".")[0]:
            raise ConfigError(f"{field} = '{spec}': no module '{e.name}' in the current folder ({os.getcwd()}) or "
                              f"the installed packages; put {e.name.split('.')[0]}.py in the folder you run rlvr "
                              f"from, or pip install the package that holds it") from None
        raise ConfigError(f"{field} = '{spec}': importing it failed at {_where(e)}: {_one_line(e)}; install the "
                          f"missing package or fix the import") from None
    except SyntaxError as e:
        raise ConfigError(f"{field} = '{spec}': syntax error at {e.filename}:{e.lineno}: {e.msg}; fix the plug-in "
                          f"file") from None
    except TypeError as e:
        if "argument" in str(e) and kwargs:  # the constructor refused the recipe's kwargs
            raise ConfigError(f"{field} = '{spec}' with kwargs {kwargs}: {_one_line(e)}; fix the verifier's kwargs "
                              f"in the recipe") from None
        raise ConfigError(f"{field} = '{spec}': {_one_line(e)} (at {_where(e)}); a plug-in is a subclass of "
                          f"verifiers.Verifier with class attributes name and signal and a method "
                          f"{VERIFY_SIGNATURE}") from None
    except Exception as e:  # the plug-in module or constructor raised: the user's code, shown where it failed
        raise ConfigError(f"{field} = '{spec}': {type(e).__name__} at {_where(e)}: {_one_line(e)}") from None
    cls = type(v)
    if isinstance(v, Verifier):
        problem = _signature_problem(cls)
        if problem:
            raise ConfigError(f"{field} = '{spec}': {problem}; write {VERIFY_SIGNATURE} (README, \"Your own "
                              f"verifier\")")
    return v


def _signature_problem(cls) -> str | None:
    fn = getattr(cls, "_verify", None)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    where = _source_of(fn)
    if "prompt" not in params:
        return f"{cls.__qualname__}._verify{sig} at {where} lacks the keyword argument `prompt`"
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3 and not any(p.kind is p.VAR_POSITIONAL for p in params.values()):
        return f"{cls.__qualname__}._verify{sig} at {where} must take (self, completion, reference)"
    return None


def _source_of(fn) -> str:
    try:
        return f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
    except (TypeError, OSError):
        return getattr(fn, "__qualname__", "?")


def _where(e: BaseException) -> str:
    """file:line of the innermost frame outside importlib and rlvr/verifiers' own loading code."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib" not in f.filename
              and not f.filename.endswith(("verifiers/registry.py", "rlvr/plugins.py"))]
    if not frames:
        return "import"
    f = frames[-1]
    return f"{f.filename}:{f.lineno}"


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def add_cwd_to_path() -> None:
    """Put the current folder first on sys.path, as `python -m` and `python script.py` do for their folder, so a
    plug-in module next to the recipe's launch folder imports by its name."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
