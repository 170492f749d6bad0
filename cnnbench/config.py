"""The config schema: dataclasses registered in Hydra's ConfigStore.

Every YAML under ``conf/`` is merged onto these, so a misspelled key or a
value of the wrong type fails while Hydra composes the config, before any
work starts. A field added here is a key users may set; give it a default
and say in the README what it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class ModelConfig:
    name: str = MISSING
    paper: Optional[str] = None
    # (channels, height, width) the network expects; null takes the dataset's.
    input_size: Optional[List[int]] = None
    # Reusable sub-networks: {block_name: {args: [...], layers: [...]}}.
    blocks: Dict[str, Any] = field(default_factory=dict)
    layers: List[Any] = MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    # Where the dataset lives on disk; null uses the dataset's default place.
    root: Optional[str] = None
    download: bool = False
    batch_size: int = 128
    # Batch size for evaluation; null reuses data.batch_size.
    eval_batch_size: Optional[int] = None
    num_classes: int = MISSING
    channels: int = MISSING
    image_size: int = MISSING
    mean: List[float] = MISSING
    std: List[float] = MISSING


@dataclass
class AugmentConfig:
    name: str = "none"
    # Zero-pad each side by this many pixels, then take a random crop of the
    # original size (0: no cropping).
    crop_padding: int = 0
    # Mirror left-right with probability 1/2.
    hflip: bool = False


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.01
    nesterov: bool = False


@dataclass
class ScheduleConfig:
    name: str = "cosine"
    # Linear warm-up from 0 to optim.lr over this many epochs (fractions allowed).
    warmup_epochs: float = 0.0
    # step: multiply the lr by `gamma` every `step_size` epochs.
    step_size: int = 30
    gamma: float = 0.1
    # cosine: anneal to this fraction of optim.lr by the last step.
    final_lr_fraction: float = 0.0


@dataclass
class RegularizationConfig:
    # null keeps each model's own dropout rates; a number sets every dropout
    # layer to it (0 removes them).
    dropout: Optional[float] = None
    # Momentum and weight decay live here, not in `optim`: they are the knobs
    # the papers ablate, and one place to set them keeps sweeps unambiguous.
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # false turns every LRN layer into identity.
    lrn: bool = True
    label_smoothing: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 30
    devices: int = 1
    # auto | cpu | cuda
    accelerator: str = "auto"
    # null | auto (continue the newest run of this config) | path to a checkpoint
    resume: Optional[str] = None
    # Torch intra-op threads; null leaves torch's default.
    threads: Optional[int] = None
    progress_bar: bool = True


@dataclass
class EvalConfig:
    crops: int = 1
    split: str = "val"


@dataclass
class TrainConfig:
    seed: int = 0
    run_name: str = "${model.name}_${data.name}"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class EvalDataOverrides:
    """What `cnnbench eval` may change about the checkpoint's own dataset."""

    root: Optional[str] = None
    batch_size: Optional[int] = None


@dataclass
class EvalCommandConfig:
    checkpoint: str = MISSING
    run_name: str = "eval"
    data: EvalDataOverrides = field(default_factory=EvalDataOverrides)
    eval: EvalConfig = field(default_factory=EvalConfig)
    accelerator: str = "auto"


SCHEMAS = {"train": TrainConfig, "eval": EvalCommandConfig}


def register_schemas() -> None:
    store = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        store.store(name=f"{command}_schema", node=schema)
