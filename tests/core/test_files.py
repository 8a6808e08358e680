"""Atomic writes: all or nothing, and the permissions an ordinary open/mkdir would give."""

from __future__ import annotations

import os
import stat

import pytest

from yolov3_tvm_opt.core.files import atomic_dir, atomic_file, write_json


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_dir(tmp_path / "artifact") as tmp:
            (tmp / "model.so").write_bytes(b"x")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "m.json") == 0o666 & ~umask
    assert _mode(tmp_path / "artifact") == 0o777 & ~umask


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_failed_directory_keeps_the_old_one(tmp_path):
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("2")
            raise KeyboardInterrupt
    assert (tmp_path / "d" / "f").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
