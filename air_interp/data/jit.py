"""numba's cache of compiled functions, kept out of the installed package.

``numba.njit(cache=True)`` writes its cache beside the source, into the installed package's
``__pycache__``. Here it goes to ``NUMBA_CACHE_DIR`` when the user set it, else to
``$XDG_CACHE_HOME/air-interp/numba`` (``~/.cache/air-interp/numba``); when that folder cannot be
made or written, the functions are compiled without a cache (each process compiles them again)
rather than written anywhere else. Import this before numba is used (the generators do).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, cast

Function = TypeVar("Function", bound=Callable[..., Any])


def numba_cache_dir() -> Optional[Path]:
    """The folder numba's cache goes to, or None when it cannot be written (no cache then)."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        folder = Path(configured)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = Path(base) / "air-interp" / "numba"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return None
    return folder


CACHE_DIR = numba_cache_dir()
if CACHE_DIR is not None and "numba" not in sys.modules:
    os.environ["NUMBA_CACHE_DIR"] = str(CACHE_DIR)  # numba reads it when first imported

import numba  # noqa: E402
from numba.core import config as numba_config  # noqa: E402

if CACHE_DIR is not None:
    setattr(numba_config, "CACHE_DIR", str(CACHE_DIR))  # numba imported before us: set its setting itself


def njit(function: Function) -> Function:
    """``numba.njit``, cached in :data:`CACHE_DIR` (never beside the package), uncached without one."""
    return cast(Function, numba.njit(cache=CACHE_DIR is not None)(function))
