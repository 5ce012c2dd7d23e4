#!/usr/bin/env bash
# The newcomer's path: a fresh clone of this commit in a folder with no ../shared beside it,
# hub blocked, no TYR_DATA_DIR. `make run` (the README's first command) on a tiny random model
# with the default evaluate section must finish, and name the data set of every figure.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git clone --quiet --no-hardlinks "$repo" "$tmp/repo"
git -C "$tmp/repo" checkout --quiet "$(git -C "$repo" rev-parse HEAD)"
cd "$tmp/repo"
if [ -e ../shared ]; then echo "fresh clone has a ../shared beside it" >&2; exit 1; fi
unset TYR_DATA_DIR
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
start=$(date +%s)
make install
.venv/bin/python .ci/tiny_model.py "$tmp/tiny-llama"
printf 'run: newcomer\nmodel: {source: %s}\n' "$tmp/tiny-llama" > "$tmp/tiny-model.yaml"
make run SNAKEMAKE_ARGS="--configfile config/presets/tiny.yaml $tmp/tiny-model.yaml"
.venv/bin/python .ci/check_fresh_run.py results/newcomer
echo "fresh-clone install + run: $(( $(date +%s) - start )) s"
