#!/usr/bin/env bash
# Download, on a development machine with internet, the wheels that benchmarks/gpu/run.sh needs on the GPU machine
# (CPython 3.12, x86-64, no registry): exactly the pinned list in benchmarks/gpu/wheels.txt, no dependencies
# resolved (--no-deps; the list names each one). Writes .whl/ at the repository root (git-ignored) and checks that
# it stays well under the 64 MiB that travels with one device call.
#
#   bash benchmarks/gpu/fetch_wheels.sh [DEST]      # DEST defaults to .whl
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="${1:-.whl}"
list=benchmarks/gpu/wheels.txt
mkdir -p "$dest"
rm -f "$dest"/*.whl
grep -qxF "/$dest/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/$dest/" >> .git/info/exclude; }
mapfile -t reqs < <(grep -v '^\s*#' "$list" | sed '/^\s*$/d')
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${reqs[@]}"
n=$(ls "$dest"/*.whl | wc -l)
if [ "$n" -ne "${#reqs[@]}" ]; then
    echo "fetch_wheels: expected ${#reqs[@]} wheels, got $n in $dest" >&2; exit 1
fi
kib=$(du -sk "$dest" | cut -f1)
echo "fetch_wheels: $n wheels, $((kib / 1024)) MiB in $dest (carry it: run(carry=['$dest']))"
if [ "$kib" -gt $((48 * 1024)) ]; then
    echo "fetch_wheels: $dest is over 48 MiB; the working tree plus carried paths must stay under 64 MiB" >&2; exit 1
fi
