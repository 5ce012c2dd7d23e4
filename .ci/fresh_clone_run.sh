#!/usr/bin/env bash
# The newcomer's path: a fresh clone of this commit in a folder with no ../shared beside it, hub
# blocked, no TYR_DATA_DIR.
#   .ci/fresh_clone_run.sh install   clone + `make install` (the README's first command, its install part)
#   .ci/fresh_clone_run.sh run       `make run` planned on a tiny random model (-n): the clone parses
# The tiny run itself, offline with the default evaluate section, is tests/workflow/test_workflow.py's
# reference run (test_an_offline_run_names_the_data_set_of_every_figure); this checks what only a
# fresh clone can: that the pinned install and the parse work with nothing but the repository.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="${TYR_FRESH_DIR:-/tmp/tyr-fresh-clone}"
unset TYR_DATA_DIR
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
case "${1:-}" in
install)
    rm -rf "$tmp" && mkdir -p "$tmp"
    git clone --quiet --no-hardlinks "$repo" "$tmp/repo"
    git -C "$tmp/repo" checkout --quiet "$(git -C "$repo" rev-parse HEAD)"
    if [ -e "$tmp/shared" ]; then echo "fresh clone has a ../shared beside it" >&2; exit 1; fi
    start=$SECONDS
    make -C "$tmp/repo" install
    echo "fresh-clone install: $((SECONDS - start)) s"
    ;;
run)
    cd "$tmp/repo"
    .venv/bin/python .ci/tiny_model.py "$tmp/tiny-llama"
    printf 'run: newcomer\nmodel: {source: %s}\n' "$tmp/tiny-llama" > "$tmp/tiny-model.yaml"
    make run SNAKEMAKE_ARGS="-n --configfile config/presets/tiny.yaml $tmp/tiny-model.yaml" | tail -3
    rm -rf "$tmp"
    ;;
*)
    echo "usage: $0 install|run" >&2; exit 2 ;;
esac
