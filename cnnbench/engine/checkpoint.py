"""Files a run writes, each written whole or not at all.

Everything goes to a temporary file beside the target, is flushed to disk,
then renamed over it; a crash or a full disk mid-write leaves the previous
file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Tuple

import numpy as np
import torch

from cnnbench.errors import UserError

# 3: loaded with weights_only, numpy's random state as a tensor, a checksum of the tensors.
FORMAT = 3


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


def remove_partial_writes(folder: Path) -> None:
    """Delete the temporary files (``.<name>.*.tmp``, see atomic_write) that a process killed
    mid-write left in a run folder and its checkpoints/; only one process writes a run folder,
    so none of them is still being written."""
    for where in (Path(folder), Path(folder) / "checkpoints"):
        for partial in where.glob(".*.tmp") if where.is_dir() else ():
            if partial.is_file():
                partial.unlink(missing_ok=True)


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
    """Write ``state`` (plain Python values and tensors only: it is read back with
    ``weights_only=True``), stamped with its format and a checksum of its tensors."""
    state = {**state, "format": FORMAT}
    state["tensor_checksum"] = tensor_checksum(state)
    atomic_write(path, lambda handle: torch.save(state, handle))


def tensor_checksum(tree: Any) -> str:
    """SHA-256 over every tensor in ``tree`` (with its place, dtype and shape), in key order.

    torch's zip archive does not check its records on load, so a flipped byte
    in the weights would be trained on silently; this catches it.
    """
    digest = hashlib.sha256()
    for where, tensor in sorted(tensors_in(tree, "")):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{where}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()


def tensors_in(tree: Any, where: str) -> Iterator[Tuple[str, torch.Tensor]]:
    if isinstance(tree, torch.Tensor):
        yield where, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            if key != "tensor_checksum":
                yield from tensors_in(value, f"{where}/{key}")
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from tensors_in(value, f"{where}/{index}")


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
    if not zipfile.is_zipfile(path):
        raise UserError(f"cannot read checkpoint {path}: it is not a cnnbench checkpoint (not a torch archive); "
                        "pass a checkpoints/*.pt file or a run folder that `cnnbench train` wrote")
    state = read_safely(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"{path} is not a cnnbench checkpoint (no model weights and config inside)")
    if state.get("format") != FORMAT or "tensor_checksum" not in state:
        raise UserError(f"{path} was written by another version of cnnbench (format {state.get('format')}, "
                        f"this one reads {FORMAT}); evaluate or resume it with that version, or train anew")
    if tensor_checksum(state) != state["tensor_checksum"]:
        raise UserError(f"{path} is damaged: its tensors do not match the checksum saved with them; "
                        "use another checkpoint (best.pt, or an earlier copy)")
    state["path"] = str(path)
    return state


def read_safely(path: Path) -> Any:
    """torch.load with ``weights_only``: a file that holds anything but tensors and plain
    Python values (a crafted file could run code when unpickled) is refused."""
    try:
        # Memory-mapped: the bytes are read when used, not copied up front.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise UserError(f"cannot read checkpoint {path}: it is not a cnnbench checkpoint: it holds Python "
                        "objects that a checkpoint never holds and that could run code when loaded") from err
    except Exception as err:  # torch raises many types for a damaged file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot read checkpoint {path}: {reason}") from err


def load_weights(model: torch.nn.Module, state: dict) -> None:
    """Put a checkpoint's weights into ``model``; a clear error when they do not fit it."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise UserError(f"checkpoint {state['path']} does not fit this model ({detail})") from err


def rng_state() -> dict:
    """Every global random stream a training step draws from (dropout, DropConnect, ...),
    as tensors and plain values (what a ``weights_only`` load accepts). numpy's uint32
    key goes as int64: torch's uint32 tensors do not survive pickling between processes."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
