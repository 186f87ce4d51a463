"""Atomic writes: all or nothing, with the permissions of an ordinary write."""
import os
import stat

import pytest

from air_interp.io import atomic_path


def test_atomic_write_replaces_only_on_success_and_keeps_normal_permissions(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["result.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "fresh.txt") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "folder", directory=True) as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "fresh.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
