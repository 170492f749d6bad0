"""Files a run writes, each written whole or not at all.

Everything goes to a temporary file beside the target, is flushed to disk,
then renamed over it; a crash or a full disk mid-write leaves the previous
file as it was.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import numpy as np
import torch

from cnnbench.errors import UserError


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        # torch.save reports a full disk as a RuntimeError with the OSError behind it.
        cause = err if isinstance(err, OSError) else err.__cause__ or err.__context__
        if isinstance(cause, OSError):
            reason = cause.strerror or str(cause)
            raise UserError(f"cannot write {path}: {reason}; the previous {path.name} is as it was") from err
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target``, as atomically as every other write here."""
    with open(source, "rb") as src:
        atomic_write(target, lambda handle: shutil.copyfileobj(src, handle, 1 << 20))


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by `cnnbench train`; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        if not candidate.is_file():
            raise UserError(f"{path} is a folder without checkpoints/last.pt; pass a run folder or a .pt file")
        path = candidate
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        # Memory-mapped: reading a checkpoint for its config alone (as resuming does
        # before the run starts) touches only the bytes it uses.
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise UserError(f"cannot read checkpoint {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"{path} is not a cnnbench checkpoint (no model weights and config inside)")
    state["path"] = str(path)
    return state


def load_weights(model: torch.nn.Module, state: dict) -> None:
    """Put a checkpoint's weights into ``model``; a clear error when they do not fit it."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise UserError(f"checkpoint {state['path']} does not fit this model ({detail})") from err


def rng_state() -> dict:
    """Every global random stream a training step draws from (dropout, DropConnect, ...)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
