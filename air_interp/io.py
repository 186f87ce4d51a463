"""Writing results safely: atomic writes, and the one rule every writing command follows.

A result is either completely there or not there at all (:func:`atomic_path`), and nothing the
user has is lost: a command refuses, before any compute, to write where it would replace
something it did not create, and never writes over one of its own inputs (:func:`check_not_input`).

- one file (:func:`check_file_target`): an existing file is replaced only with ``overwrite``;
- files put into a folder (:func:`check_folder_target`): a non-empty folder is written into only
  with ``overwrite``, and then only files of the same names are replaced;
- a folder written as a whole (:func:`check_replaceable_folder`; a dataset, the figures): an
  existing folder is replaced only with ``overwrite`` and only when it holds nothing but such a
  result of ours;
- a probe's ``--out`` folder (:func:`probe_output`): its files are written into a temporary
  folder and moved in together at the end, under an exclusive lock, so two commands never mix
  their files in one folder.

A symlink is what it points to: writing "to" a link writes its target (the file, or the folder's
contents as a whole) and leaves the link as the user made it; a link to nothing is refused.
Temporaries carry the writing process's id, so those of a killed process are removed (and a
folder it was replacing is put back) by the next write to the same place.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
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
    ``path`` is left untouched. A symlink at ``path`` is written through: its target is replaced
    (beside the target, in the target's folder) and the link stays as it is.
    """
    target = followed(path)
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


def followed(path: PathLike) -> Path:
    """``path`` itself, or, when it is a symlink, the path it points to (symlinks resolved all the
    way): a command writes what a link points to and never replaces or renames the link. A link
    to nothing is a one-line AirInterpError."""
    path = Path(path)
    if not path.is_symlink():
        return path
    if not path.exists():
        raise AirInterpError(f"{path} is a symlink to {os.readlink(path)}, which does not exist; "
                             "refusing to write through it, choose another path or fix the link")
    return path.resolve()


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
    followed(path)  # a link to nothing is refused
    path = Path(path)
    if path.is_dir():
        raise AirInterpError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise AirInterpError(f"{path} exists; pass --overwrite to replace it")
    return check_writable_location(path)


def check_folder_target(path: PathLike, overwrite: bool = False) -> Path:
    """A command may put files into the folder ``path``: it is new or empty, or ``overwrite``
    (files of the same names are replaced, nothing else is touched)."""
    followed(path)  # a link to nothing is refused
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
    existing folder is not a ``what`` of ours that may be replaced (None when it is). A symlink
    to such a folder is checked as that folder, whose contents are then replaced as a whole
    (:func:`atomic_path`): the link itself is kept."""
    path = Path(path)
    real = followed(path)
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
    check_writable_location(real.parent)  # the new folder is made beside the old one (a link's target)
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


# ---- a probe's --out folder ----------------------------------------------------------------------

LOCK_NAME = ".air-interp.lock"  # in the --out folder while a command writes into it
STAGING_PREFIX = ".air-interp-staging-"  # the temporary folder a probe's files are written into


class ProbeOutput:
    """Where a probe writes: into ``folder`` (a temporary folder inside ``out``); when the block of
    :func:`probe_output` ends without an error every file moves into ``out`` together and
    ``moved`` lists them at their final paths."""

    def __init__(self, out: Path, real: Path, folder: Path) -> None:
        self.out = out  # as the user named it (a symlink stays a symlink)
        self.real = real  # the folder the files end up in
        self.folder = folder
        self.moved: list[Path] = []

    def final(self, paths: Iterable[PathLike]) -> list[Path]:
        """Where files written into :attr:`folder` will be once moved into ``out``."""
        return [self.out / Path(p).relative_to(self.folder) for p in paths]


@contextmanager
def probe_output(out: Optional[PathLike], overwrite: bool = False,
                 names: Sequence[str] = ()) -> Iterator[Optional[ProbeOutput]]:
    """Write a probe's files into ``out`` together, under an exclusive lock; None when ``out`` is None.

    On entry (before any compute): ``out`` is checked as :func:`check_folder_target` checks it
    (new or empty, or ``overwrite``; a symlink is the folder it points to, kept as a link), created
    when new, and locked with an exclusive ``flock`` on ``out/.air-interp.lock``: while one
    command holds it, a second on the same folder is a one-line AirInterpError. Existing entries
    of ``out`` matching the glob ``names`` (what the command will write) must be plain files.
    The block writes into ``.folder``, a temporary folder inside ``out``; at its end every entry
    moves into ``out`` (a file replaces the file of the same name; nothing else is touched). On
    an error nothing is moved, the temporary folder is removed and a folder made on entry with it.
    """
    if out is None:
        yield None
        return
    path = Path(out)
    real = followed(path)
    if real.exists() and not real.is_dir():
        raise AirInterpError(f"{path} is a file; --out takes a folder")
    check_writable_location(real)
    made = [p for p in (real, *real.parents) if not p.exists()]
    try:
        real.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AirInterpError(f"{path}: cannot create the folder ({err.strerror})") from None
    lock: Optional[int] = None
    staging: Optional[Path] = None
    done = False
    try:
        lock = _lock_folder(real, path)
        for stale in real.glob(f"{STAGING_PREFIX}*"):  # we hold the lock: no one else is staging
            _remove(stale)
        entries = sorted(p.name for p in real.iterdir() if p.name != LOCK_NAME)
        if entries and not overwrite:
            raise AirInterpError(f"{path} is not empty; pass --overwrite to write into it "
                                 "(files of the same names are replaced, nothing else is touched)")
        for name in entries:
            if any(Path(name).match(pattern) for pattern in names):
                _check_replaceable_entry(real / name, path)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=real))
        except OSError as err:
            raise AirInterpError(f"{path}: cannot create files in it ({err.strerror})") from None
        _default_permissions(staging)
        output = ProbeOutput(path, real, staging)
        yield output
        moves = [(entry, real / entry.name) for entry in sorted(staging.iterdir())]
        for entry, target in moves:  # every check before the first move
            _check_replaceable_entry(target, path, entry.is_dir())
        for entry, target in moves:
            os.replace(entry, target)
            output.moved.append(path / entry.name)
        done = True
    finally:
        if staging is not None:
            _remove(staging)
        if lock is not None:
            (real / LOCK_NAME).unlink(missing_ok=True)  # while still holding it (see _lock_folder)
            os.close(lock)
        if not done:
            for folder in made:  # made on entry, and empty again: remove
                try:
                    folder.rmdir()
                except OSError:
                    break


def _lock_folder(real: Path, shown: Path) -> int:
    """An exclusive non-blocking flock on ``real/.air-interp.lock`` (its file descriptor).

    The holder removes the lock file before it lets go, so a process that opened the old file
    and locked it after that holds a lock on a file no longer there: it checks that the path
    still names the file it locked, and tries again when not."""
    lock_path = real / LOCK_NAME
    for _ in range(10):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise AirInterpError(f"{shown}: cannot create files in it ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AirInterpError(f"{shown} is being written by another air-interp command "
                                     f"({'process ' + holder if holder else 'it holds'} {lock_path}); wait "
                                     "for it to finish or choose another --out") from None
            raise AirInterpError(f"{shown}: cannot lock {lock_path} ({err.strerror})") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)
    raise AirInterpError(f"{shown}: could not lock {lock_path}; another command keeps taking it")


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _check_replaceable_entry(target: Path, shown_out: Path, is_dir: bool = False) -> None:
    """``target`` (inside a probe's --out folder) may receive a new file: it is missing or a file."""
    name = shown_out / target.name
    if target.is_symlink():
        raise AirInterpError(f"{name} is a symlink; refusing to replace a link (or write through it), "
                             "remove it or choose another --out")
    if target.exists() and (target.is_dir() or is_dir):
        raise AirInterpError(f"{name} is a {'folder' if target.is_dir() else 'file'}; refusing to replace it with "
                             f"a {'folder' if is_dir else 'file'}, choose another --out")


def sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (what manifests and caches record of a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
