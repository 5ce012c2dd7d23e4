"""Atomic artifacts: write under a temporary name, then rename.

A crash (or `kill -9`) leaves either the old file or the complete new one, never a
partial file that looks complete to Snakemake or to a resumed job.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds.

    Works for files and for directories (zarr stores, model folders). A directory that
    already exists is swapped with the new one in one step (`exchange`), so a reader or a
    crash never meets a moment with neither the old nor the new directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            if not exchange(target, path):  # no renameat2 here: move the old one aside first
                os.replace(path, tmp / ".old")
                os.replace(target, path)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the old directory (swapped into tmp) goes with it


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


@functools.cache
def _renameat2():
    """glibc's renameat2, loaded once; None where the C library lacks it."""
    import ctypes

    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def exchange(a, b) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE, kernel >= 3.15).
    False where the C library or the file system does not offer it (the caller falls back)."""
    import ctypes
    import errno

    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


_META_KEY = "tyr"  # all our metadata under one header key: the library writes several keys in
# hash-map order, so two saves of the same tensors differed byte for byte (and in their sha256)


def save_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write tensors and metadata so the same input gives the same bytes."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}  # a GPU stage's tensors too
    meta = {_META_KEY: json.dumps({k: str(v) for k, v in (metadata or {}).items()}, sort_keys=True)}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except Exception as e:  # the library's own error type: say which file, keep the OS's words
            if "I/O error" not in str(e):
                raise
            raise OSError(f"writing {path}: {e}") from e


def load_safetensors(path) -> tuple[dict, dict]:
    """Tensors and metadata (values as strings) of a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        if _META_KEY in meta:
            meta = json.loads(meta[_META_KEY])
        return {k: f.get_tensor(k) for k in f.keys()}, meta


CHECKSUMS = "checksums.json"  # inside a folder artifact: {relative path: sha256} of every other file


def sha256_file(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_checksums(folder, skip=(CHECKSUMS, "zarr.json", ".snakemake_timestamp")) -> dict:
    """{relative path: sha256} of every file of a folder but the top-level names in `skip`
    (the record itself, a store's root metadata, Snakemake's marker of directory outputs)."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (p.parent == folder and p.name in skip)
    }


def write_checksums(folder) -> dict:
    """Record the content hash of every file of a folder artifact, so `tyr.workflow.validate` finds a
    flipped byte in a file of the right size. A zarr store keeps them in its root attributes
    (`checksums`), any other folder in `checksums.json`. Call it last, while the folder is
    still under its temporary name."""
    folder = Path(folder)
    sums = folder_checksums(folder)
    if (folder / "zarr.json").is_file():
        import zarr

        zarr.open_group(str(folder), mode="r+").attrs["checksums"] = sums
    else:
        (folder / CHECKSUMS).write_text(json.dumps(sums, indent=1) + "\n")
    return sums


def recorded_checksums(folder) -> dict | None:
    """What `write_checksums` recorded for a folder, or None when it recorded nothing."""
    folder = Path(folder)
    if (folder / CHECKSUMS).is_file():
        return json.loads((folder / CHECKSUMS).read_text())
    if (folder / "zarr.json").is_file():
        attrs = json.loads((folder / "zarr.json").read_text()).get("attributes", {})
        return attrs.get("checksums")
    return None
