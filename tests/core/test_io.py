"""tyr.core.io: atomic artifacts, for files and for directories."""

from __future__ import annotations

import os
import threading

import pytest

from tyr.core import io


def _write_folder(path, version: int) -> None:
    with io.atomic_path(path) as tmp:
        tmp.mkdir()
        for i in range(20):
            (tmp / f"part{i}").write_text(str(version))


def _versions(folder) -> set[str]:
    """The contents of every file of one directory, read through one handle of it (by path, a
    read after the swap would see the next version and look like a mix)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = set()
        for name in os.listdir(fd):
            f = os.open(name, os.O_RDONLY, dir_fd=fd)
            with os.fdopen(f) as handle:
                out.add(handle.read())
        return out
    finally:
        os.close(fd)


def test_a_replaced_directory_never_vanishes_and_is_never_mixed(tmp_path):
    """A reader polling the folder while it is rewritten 200 times sees it every time, and
    always whole: every part of one version."""
    folder = tmp_path / "store"
    _write_folder(folder, 0)
    seen, missing, mixed, stop = [], [], [], threading.Event()

    def reader():
        while not stop.is_set():
            if not folder.is_dir():
                missing.append(1)
                continue
            try:
                versions = _versions(folder)
            except FileNotFoundError:  # the swapped-out version, removed while we read it
                continue
            seen.append(len(versions))
            if len(versions) > 1:
                mixed.append(versions)

    thread = threading.Thread(target=reader)
    thread.start()
    for version in range(1, 201):
        _write_folder(folder, version)
    stop.set()
    thread.join()
    assert {p.read_text() for p in folder.iterdir()} == {"200"}
    assert not missing and not mixed and len(seen) > 100
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no temporary or old folder left


def test_a_failed_block_leaves_the_old_directory(tmp_path):
    folder = tmp_path / "store"
    _write_folder(folder, 1)
    with pytest.raises(RuntimeError), io.atomic_path(folder) as tmp:
        tmp.mkdir()
        (tmp / "part0").write_text("2")
        raise RuntimeError("crash mid-write")
    assert {p.read_text() for p in folder.iterdir()} == {"1"} and len(list(folder.iterdir())) == 20
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_exchange_swaps_two_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    if not io.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.fail("renameat2(RENAME_EXCHANGE) is not available on this Linux: atomic_path falls back")
    assert (tmp_path / "b" / "x").read_text() == "a" and not (tmp_path / "a" / "x").exists()
