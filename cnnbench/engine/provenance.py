"""Where a result came from: code version, machine, library versions, the config's identity.

Everything here goes into ``results.json`` (and the HParams entry), so a
number in a table can be traced to the code and settings that produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import List, Optional

import torch
import torchvision
from omegaconf import DictConfig

import cnnbench

# Keys of `trainer` that say where or how long a run goes on, not what it computes.
NOT_THE_EXPERIMENT = ("resume", "progress_bar")


def provenance(resolved: dict, device: torch.device) -> dict:
    """The fields of ``results.json`` that identify the code, the machine and the experiment."""
    commit, dirty, diff_hash = git_state()
    return {
        "device": device_name(device),
        # What a launcher gave this run: which GPUs it could see and how many CPU threads it used.
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "threads": torch.get_num_threads(),
        "versions": {"cnnbench": cnnbench.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "python": platform.python_version()},
        "git_commit": commit,
        # Uncommitted changes to tracked files: the commit alone does not say what ran.
        "git_dirty": dirty,
        "git_diff_hash": diff_hash,
        "config_hash": config_hash(resolved),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git(args: List[str]) -> Optional[str]:
    """Output of a git command run in cnnbench's own source folder; None outside a checkout."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(cnnbench.__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> tuple:
    """(commit, has uncommitted changes, hash of the diff against the commit), or Nones."""
    commit = (git(["rev-parse", "HEAD"]) or "").strip() or None
    if commit is None:
        return None, None, None
    diff = git(["diff", "HEAD", "--no-color", "--", "."]) or ""
    digest = hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None
    return commit, bool(diff), digest


def config_hash(resolved: dict) -> str:
    """Identifies the experiment: the resolved config without where or how long it runs."""
    experiment = {k: v for k, v in resolved.items() if k != "trainer"}
    experiment["trainer"] = {k: v for k, v in resolved["trainer"].items() if k not in NOT_THE_EXPERIMENT}
    return hashlib.sha256(json.dumps(experiment, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hparams(cfg: DictConfig) -> dict:
    """The settings TensorBoard's HParams tab shows for a run."""
    return {
        "model": cfg.model.name, "data": cfg.data.name, "lr": cfg.optim.lr, "optim": cfg.optim.name,
        "batch_size": cfg.data.batch_size, "epochs": cfg.trainer.epochs, "augment": cfg.augment.name,
        "momentum": cfg.regularization.momentum, "weight_decay": cfg.regularization.weight_decay,
        "dropout": -1.0 if cfg.regularization.dropout is None else cfg.regularization.dropout,
        "lrn": cfg.regularization.lrn, "label_smoothing": cfg.regularization.label_smoothing,
        "schedule": cfg.schedule.name, "norm": cfg.model.norm, "seed": cfg.seed,
    }
