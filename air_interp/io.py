"""Writing results safely: atomic writes, and the one rule every writing command follows.

A result is either completely there or not there at all (:func:`atomic_path`), and nothing the
user has is lost: a command refuses, before any compute, to write where it would replace
something it did not create, and never writes over one of its own inputs (:func:`check_not_input`).

- one file (:func:`check_file_target`): an existing file is replaced only with ``overwrite``;
- files put into a folder (:func:`check_folder_target`): a non-empty folder is written into only
  with ``overwrite``, and then only files of the same names are replaced;
- a folder written as a whole (:func:`check_replaceable_folder`; a dataset, the figures): an
  existing folder is replaced only with ``overwrite`` and only when it holds nothing but such a
  result of ours.

Temporaries carry the writing process's id, so those of a killed process are removed (and a
folder it was replacing is put back) by the next write to the same place.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from .errors import AirInterpError

PathLike = str | os.PathLike


@contextmanager
def atomic_path(path: PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    With ``directory=True`` the temporary path is an empty directory, and an existing directory
    at ``path`` is replaced (callers decide beforehand whether it may be, see
    :func:`check_replaceable_folder`). On any exception the temporary path is removed and
    ``path`` is left untouched.
    """
    target = Path(path)
    if target.exists() and target.is_dir() != directory:
        raise AirInterpError(f"{target} is a {'file' if directory else 'folder'}; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    prefix = f".{target.name}.tmp-{os.getpid()}-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _default_permissions(tmp)
        if directory and target.exists():
            _swap_folder(tmp, target)
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _swap_folder(new: Path, target: Path) -> None:
    """Put ``new`` in ``target``'s place; the old folder is kept aside until ``new`` is in."""
    old = _old_name(target, os.getpid())
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old)


def _old_name(target: Path, pid: int) -> Path:
    return target.with_name(f".{target.name}.old-{pid}")


def remove_stale_temporaries(target: Path) -> None:
    """Remove the temporaries a killed process left beside ``target``; put back a folder it had
    moved aside to replace it and did not get to replace."""
    parent = target.parent
    if not parent.is_dir():
        return
    name = glob.escape(target.name)
    for tmp in parent.glob(f".{name}.tmp-*-*"):
        if _dead(tmp.name.removeprefix(f".{target.name}.tmp-").split("-")[0]):
            _remove(tmp)
    for old in parent.glob(f".{name}.old-*"):
        if _dead(old.name.removeprefix(f".{target.name}.old-")):
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.rename(target)


def _dead(pid_text: str) -> bool:
    """True when ``pid_text`` names a process that no longer runs (False when unsure)."""
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _default_permissions(path: Path) -> None:
    """mkstemp/mkdtemp create owner-only files; give the result the permissions of a normal write."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


# ---- where a command may write ------------------------------------------------------------------


def check_writable_location(path: PathLike) -> Path:
    """Files can be created at ``path``: it is, or its nearest existing ancestor is, a folder we
    may write in (tried with a temporary file, which is removed at once)."""
    path = Path(path)
    place = path if path.is_dir() else path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise AirInterpError(f"{path}: {place} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as err:
        raise AirInterpError(f"{path}: cannot create files in {place} ({err.strerror})") from None
    return path


def check_not_input(output: PathLike, inputs: Iterable[PathLike]) -> None:
    """``output`` is none of the command's ``inputs`` and lies in none of its input folders, after
    resolving symlinks and ``..`` (so a command never writes over what it reads)."""
    target = Path(output).resolve()
    for item in inputs:
        source = Path(item).resolve()
        if target == source or (source.is_dir() and target.is_relative_to(source)):
            where = "is" if target == source else "lies inside"
            raise AirInterpError(f"{output} {where} this command's input {item}; "
                                 "an output must be neither an input nor inside one, choose another path")


def check_file_target(path: PathLike, overwrite: bool = False) -> Path:
    """A command may write the file ``path``: it is new, or an existing file and ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise AirInterpError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise AirInterpError(f"{path} exists; pass --overwrite to replace it")
    return check_writable_location(path)


def check_folder_target(path: PathLike, overwrite: bool = False) -> Path:
    """A command may put files into the folder ``path``: it is new or empty, or ``overwrite``
    (files of the same names are replaced, nothing else is touched)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AirInterpError(f"{path} is a file; --out takes a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise AirInterpError(f"{path} is not empty; pass --overwrite to write into it "
                             "(files of the same names are replaced, nothing else is touched)")
    return check_writable_location(path)


def check_replaceable_folder(path: PathLike, what: str, problem: Callable[[Path], Optional[str]],
                             overwrite: bool = False) -> Path:
    """A command may write the folder ``path`` as a whole (replacing what is there): it is new or
    empty, or it is a ``what`` of ours and ``overwrite`` is given. ``problem(path)`` says why an
    existing folder is not a ``what`` of ours that may be replaced (None when it is)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AirInterpError(f"{path} is a file; --out takes a folder")
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise AirInterpError(f"{path} holds the current folder; choose another --out")
    if path.is_dir() and any(path.iterdir()):
        reason = problem(path)
        if reason is not None:
            raise AirInterpError(f"{path} is not empty and not a {what} of ours ({reason}); "
                                 "refusing to replace it, choose another --out")
        if not overwrite:
            raise AirInterpError(f"{path} is a {what} of ours; pass --overwrite to replace it")
    check_writable_location(path.parent)  # the new folder is made beside the old one
    return path


def unexpected_files(path: Path, patterns: tuple[str, ...]) -> Optional[str]:
    """The first file or folder under ``path`` that matches none of ``patterns`` (relative paths,
    glob syntax; a folder is expected when a pattern lies inside it), or None."""
    for item in sorted(path.rglob("*")):
        relative = item.relative_to(path)
        if item.is_dir() and not item.is_symlink():
            expected = any(p.startswith(f"{relative.as_posix()}/") for p in patterns)
        else:
            expected = any(relative.match(p) and len(relative.parts) == len(Path(p).parts) for p in patterns)
        if not expected:
            return f"it holds {relative}"
    return None


def sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (what manifests and caches record of a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
