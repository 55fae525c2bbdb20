#!/usr/bin/env bash
# The GPU check (benchmarks/gpu/README.md): one command on the GPU machine, needing only the working tree and the
# wheel folder that benchmarks/gpu/fetch_wheels.sh writes on a development machine (.whl/, carried with the call).
#
#   bash benchmarks/gpu/run.sh                       # one H200: correctness, rlvr fsdp + ddp, TRL; < 8 minutes
#   bash benchmarks/gpu/run.sh --cpu --tiny          # any CPU machine, the same code paths at toy sizes
#   bash benchmarks/gpu/run.sh --emulate-gpu-site .. # dev machine: import only what the GPU machine has + the wheels
#
# Other arguments go to benchmarks/gpu/bench.py (--out DIR, --steps N, --runs ..., --micro-batch-groups N).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
emulate=0
args=()
for a in "$@"; do
    if [ "$a" = "--emulate-gpu-site" ]; then emulate=1; else args+=("$a"); fi
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
pypath="$root"
wheels="${RLVR_WHEELS:-$root/.whl}"
if [ "$emulate" = 1 ]; then
    # only the GPU machine's packages (KINDS.md) and the wheel list, taken from this machine's installed copies;
    # python -S: no site-packages beyond that folder
    site="$("$py" "$root/benchmarks/gpu/emulate_site.py")"
    pypath="$root:$site"
    py_flags=(-S)
    echo "run.sh: emulated GPU site $site (python -S)"
elif ls "$wheels"/*.whl >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    # the GPU machine: CPython 3.12 with the wheel folder carried (the device README's recipe)
    # a path with "site-packages" in it: dill (datasets' fingerprints) pickles modules outside such folders by value
    target="${RLVR_WHEEL_TARGET:-/tmp/rlvr-gpu/site-packages}"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" \
        "$wheels"/*.whl
    pypath="$target:$root"
    py_flags=()
    echo "run.sh: installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $target"
else
    py_flags=()
fi
export PYTHONPATH="$pypath${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    # on the device machine: the JSON, the markdown and the runs' logs come back through $OUT (bench.py --logs)
    rc=0
    "$py" "${py_flags[@]}" "$root/benchmarks/gpu/bench.py" --logs "$OUT" "${args[@]}" || rc=$?
    exit $rc
fi
exec "$py" "${py_flags[@]}" "$root/benchmarks/gpu/bench.py" "${args[@]}"
