"""Find corrupt or truncated artifacts in a results folder, and optionally remove them.

    python -m tyr.workflow.validate results/<run> [--remove]

Artifacts are written atomically, so a partial file should never exist; this catches what
atomic writes cannot (a full disk, a bad copy between machines, bit rot). Checked: every
`*.safetensors` (header parses and every tensor's bytes are present), every `*.zarr` store
(every array opens and its chunks decode) and every `*.json` (parses); and content hashes
where they were recorded (a flipped byte in a file of the right size): a supernet layer's
level files against its manifest, and every file of a model folder or zarr store against its
`checksums` (`tyr.core.io.write_checksums`). With `--remove` the bad ones are deleted and the
command that regenerates exactly them is printed (`snakemake <the removed artifacts>`: a
missing intermediate is not remade while the results built from it exist).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
from pathlib import Path

from tyr.supernet.format import KEPT_INDEX


def check_safetensors(path: Path) -> str | None:
    data_size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "shorter than the 8-byte header length"
        (n,) = struct.unpack("<Q", head)
        if n > data_size - 8:
            return f"header length {n} exceeds the file"
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            return f"header is not JSON ({e})"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != data_size:
        return f"holds {data_size} bytes, its header describes {8 + n + end}"
    return None


def check_zarr(path: Path) -> str | None:
    import warnings

    import zarr

    warnings.filterwarnings(
        "ignore", message=".*not recognized as a component of a Zarr hierarchy"
    )  # .snakemake_timestamp
    try:
        root = zarr.open(str(path), mode="r")
        arrays = [root] if isinstance(root, zarr.Array) else [a for _, a in root.arrays()]
        for a in arrays:
            a[...]  # decodes every chunk
    except Exception as e:  # any failure to read is corruption here
        return f"{type(e).__name__}: {e}"
    return None


def check_json(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except ValueError as e:
        return f"not JSON ({e})"
    return None


def check_checksums(folder: Path) -> str | None:
    """A folder artifact's files against the hashes recorded when it was written."""
    from tyr.core.io import folder_checksums, recorded_checksums

    recorded = recorded_checksums(folder)
    if recorded is None:
        return None
    found = folder_checksums(folder)
    for name in sorted(set(recorded) | set(found)):
        if recorded.get(name) != found.get(name):
            what = "missing" if name not in found else "not recorded" if name not in recorded else "content changed"
            return f"{name}: {what} (sha256 against checksums)"
    return None


def check_levels(index: Path) -> dict[Path, str]:
    """Level files against the hashes recorded for them: by a supernet layer's manifest, or by
    a released iteration's kept index (`tyr.supernet.release`, which removed the manifests)."""
    from tyr.core.io import sha256_file

    try:
        m = json.loads(index.read_text())
    except ValueError:
        return {}
    layers = m.get("layers", [m]) if index.name == KEPT_INDEX else [m]
    what = "the kept index" if index.name == KEPT_INDEX else "the layer's manifest"
    bad = {}
    for entry in (e for layer in layers for e in layer.get("attn", []) + layer.get("mlp", [])):
        level = index.parent / entry.get("file", "")
        if "sha256" in entry and level.is_file() and sha256_file(level) != entry["sha256"]:
            bad[level] = f"content changed (sha256 against {what})"
    return bad


def problems(root) -> dict[Path, str]:
    root, bad = Path(root), {}
    for p in sorted(root.rglob("*")):
        if any(part.endswith(".zarr") for part in p.relative_to(root).parts[:-1]):
            continue  # inside a store: checked with the store
        check = (
            check_safetensors
            if p.suffix == ".safetensors" and p.is_file()
            else check_zarr
            if p.suffix == ".zarr" and p.is_dir()
            else check_json
            if p.suffix == ".json" and p.is_file()
            else check_checksums
            if p.is_dir() and p.name in ("model", "pruned")
            else None
        )
        if check and (why := check(p)):
            bad[p] = why
        elif p.suffix == ".zarr" and p.is_dir() and (why := check_checksums(p)):
            bad[p] = why
        if p.name in ("manifest.json", KEPT_INDEX) and p.is_file():
            bad.update({k: v for k, v in check_levels(p).items() if k not in bad})
    return bad


def artifact_of(path: Path) -> Path:
    """What Snakemake must regenerate for a bad file: the directory output holding it
    (`model/`, `pruned/`), the layer's manifest for a level file, else the file itself."""
    if path.is_dir():
        return path
    for parent in path.parents:
        if parent.name in ("model", "pruned"):
            return parent
        released = (parent.parent / KEPT_INDEX).exists()  # its manifest was removed: the layer job remakes it
        if parent.name.startswith("layer") and path.suffix == ".safetensors":
            if (parent / "manifest.json").exists() or released:
                return parent / "manifest.json"
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="a results folder, e.g. results/smollm2-135m")
    ap.add_argument("--remove", action="store_true", help="delete bad artifacts so Snakemake regenerates them")
    args = ap.parse_args(argv)
    bad = problems(args.root)
    targets = []
    for path, why in bad.items():
        print(f"corrupt: {path}: {why}")
        target = artifact_of(path)
        doomed = target if target.exists() else path  # a released layer's level: its manifest is gone
        if args.remove and doomed.exists():
            shutil.rmtree(doomed) if doomed.is_dir() else doomed.unlink()
            targets.append(target)
    print(f"{len(bad)} corrupt artifact(s)" + (" removed" if args.remove and bad else ""))
    if targets:
        # Snakemake does not remake a missing intermediate whose results exist (the results
        # were made from the good file): name it as a target to restore it.
        print("restore them with: snakemake --cores N " + " ".join(str(t) for t in targets))
    return 1 if bad and not args.remove else 0


if __name__ == "__main__":
    sys.exit(main())
