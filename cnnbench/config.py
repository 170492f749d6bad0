"""The config schema: dataclasses registered in Hydra's ConfigStore.

Every YAML under ``conf/`` is merged onto these, so a misspelled key or a
value of the wrong type fails while Hydra composes the config, before any
work starts. A field added here is a key users may set; give it a default
and say in the README what it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class Choice(str, Enum):
    """A key whose value is one of a closed set of strings.

    OmegaConf refuses any other value while Hydra composes the config,
    listing the choices. Members are ``str``s named by their own value, so
    code compares them with plain strings (``cfg.trainer.precision == "fp16"``)
    and they print, format and JSON-encode as the plain value.
    ``OmegaConf.to_container`` returns the members themselves: where a config
    is stored, pass ``enum_to_str=True`` (a checkpoint is read back with
    torch's ``weights_only`` loader, which takes plain strings only).
    """

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        # Python 3.11 formats a str-mixin member as "Class.member"; messages want the value.
        return format(self.value, spec)

    @classmethod
    def values(cls) -> Tuple[str, ...]:
        return tuple(member.value for member in cls)


class DatasetName(Choice):
    """The datasets cnnbench can load (cnnbench/data/datasets.py, imagenet.py)."""

    digits = "digits"
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagenet = "imagenet"
    synthetic = "synthetic"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    kmnist = "kmnist"
    folder = "folder"


class Norm(Choice):
    bn = "bn"
    gn = "gn"
    none = "none"


class Pretrained(Choice):
    """model.pretrained: whose trained weights replace the initial ones (cnnbench/models/pretrained.py)."""

    torchvision = "torchvision"


class OnCorrupt(Choice):
    error = "error"
    skip = "skip"


class Crop(Choice):
    center = "center"
    random = "random"
    random_resized = "random_resized"


class OptimName(Choice):
    sgd = "sgd"
    adamw = "adamw"


class ScheduleName(Choice):
    constant = "constant"
    step = "step"
    multistep = "multistep"
    cosine = "cosine"
    poly = "poly"
    onecycle = "onecycle"
    plateau = "plateau"


class Accelerator(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(Choice):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Split(Choice):
    train = "train"
    val = "val"


class SummaryFormat(Choice):
    table = "table"
    json = "json"


class BenchMode(Choice):
    train = "train"
    infer = "infer"


# eval.crops: an int, so not an Enum; cnnbench/validate.py checks it.
CROP_COUNTS = (1, 2, 10, 144)
# In-memory images are already the network's input size: only them and their mirrors.
IN_MEMORY_CROP_COUNTS = (1, 2)
# Datasets read from image folders, whose images are resized and cropped to the network's input.
FOLDER_DATASETS = ("imagenet", "folder")


@dataclass
class ModelConfig:
    name: str = MISSING
    paper: Optional[str] = None
    # Where the exact architecture comes from when it is not the paper's own
    # (e.g. "torchvision.models.resnet50"); null for a network from the paper.
    source: Optional[str] = None
    # The accuracy reported for this network and how it was measured, e.g.
    # {top1: 76.13, top5: 92.86, protocol: "1 crop 224, resize 256", source: "..."}.
    published: Dict[str, Any] = field(default_factory=dict)
    # (channels, height, width) the network expects; null takes the dataset's.
    input_size: Optional[List[int]] = None
    # Reusable sub-networks: {block_name: {args: [...], layers: [...]}}.
    blocks: Dict[str, Any] = field(default_factory=dict)
    # Block libraries whose blocks the rows may use: [resnet] reads conf/blocks/resnet.yaml.
    uses: List[str] = field(default_factory=list)
    layers: List[Any] = MISSING
    # How every `lrn` row reads its alpha: paper (per term of the sum, as
    # AlexNet prints it) | cuda_convnet (divided by the window size, as the
    # code that trained AlexNet, Caffe and torch do); null: each row's own.
    lrn_convention: Optional[str] = None
    # Initial weights: paper applies the file's `init_spec` (and rows'
    # `init_spec`), torch keeps torch's defaults; a file without them gets
    # torch's defaults either way.
    init: str = "paper"
    # The paper's initialisation per op kind, e.g.
    # {conv: {weight: [normal, 0.01], bias: [constant, 0]}}; see cnnbench/models/init.py.
    init_spec: Dict[str, Any] = field(default_factory=dict)
    # Start from trained weights: null (`init`) | torchvision (its
    # ImageNet weights, for models whose `source` is torchvision.models.<name>,
    # read from torch hub's cache; needs data.num_classes=1000).
    pretrained: Optional[Pretrained] = None
    # What every `relu` row is built as: null (each row's own) | relu | tanh.
    # AlexNet's Figure 1 (Krizhevsky et al. 2012) compares the two in one
    # network; models without `relu` rows refuse it.
    activation: Optional[str] = None
    # false leaves out the file's `aux_head` rows (GoogLeNet's auxiliary
    # classifiers, Szegedy et al. 2015, section 5); models without them refuse it.
    aux_heads: bool = True
    # What the model's `norm` rows are: bn (batchnorm) | gn (groupnorm, Wu &
    # He 2018) | none. Models without `norm` rows ignore it.
    norm: Norm = Norm.bn
    # Channel groups of a gn `norm` row (the GN paper's default, 32).
    norm_groups: int = 32


@dataclass
class DataConfig:
    name: DatasetName = MISSING
    # Where the dataset lives on disk; null uses $CNNBENCH_DATA_ROOT, else
    # ~/.cache/cnnbench/data.
    root: Optional[str] = None
    download: bool = False
    batch_size: int = 128
    # Batch size for evaluation; null reuses data.batch_size.
    eval_batch_size: Optional[int] = None
    # Folder datasets (folder, imagenet) may leave it null: the number of
    # class folders in train/. A number is checked against that count.
    num_classes: Optional[int] = MISSING
    # Folder datasets: 3 decodes images as RGB, 1 as grey; the model's input
    # channels (model.input_size) must agree.
    channels: int = MISSING
    # The network's input square; a model file's input_size takes precedence.
    image_size: int = MISSING
    # Per-channel normalisation of pixels on the [0, 1] scale. Folder datasets
    # may leave them null: computed from every pixel of the decoded training
    # images (before resizing) and cached next to the data (cnnbench/data/folders.py).
    mean: Optional[List[float]] = MISSING
    std: Optional[List[float]] = MISSING
    # data=synthetic only: how many random images each split has.
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    # Folder datasets (imagenet): DataLoader worker processes reading images.
    workers: int = 4
    # Folder datasets, training on CUDA: decode JPEGs on the GPU (nvJPEG) in
    # the main process; false decodes them on the CPU in the workers.
    gpu_decode: bool = True
    # Folder datasets: an unreadable image stops the run (error, naming the
    # file) or is left out, counted and warned about once (skip).
    on_corrupt: OnCorrupt = OnCorrupt.error


@dataclass
class AugmentConfig:
    name: str = "none"
    # Zero-pad each side by this many pixels, then take a random crop of the
    # original size (0: no cropping).
    crop_padding: int = 0
    # Mirror left-right with probability 1/2.
    hflip: bool = False
    # Folder datasets (imagenet) only: how a training image becomes the
    # network's input square (see cnnbench/data/transforms.py):
    # center | random (AlexNet: shorter side to `resize`, central square,
    # random crop) | random_resized (GoogLeNet: `area` and `aspect` ranges).
    crop: Crop = Crop.center
    # Shorter side in pixels before the center and random crops. Evaluation
    # must see the same scale: eval.resize (null) follows it for these crops,
    # and cnnbench.validate refuses a different eval.resize for folder datasets.
    resize: int = 256
    # random_resized: range of the patch's fraction of the image area, and of
    # its aspect ratio (width / height).
    area: List[float] = field(default_factory=lambda: [0.08, 1.0])
    aspect: List[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    # AlexNet's PCA colour augmentation: std of the weights alpha_i (0: off).
    pca_lighting: float = 0.0


@dataclass
class OptimConfig:
    # sgd | adamw
    name: OptimName = OptimName.sgd
    lr: float = 0.01
    nesterov: bool = False
    # adamw
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    # null: the optimizer's own convention (sgd coupled L2, adamw decoupled).
    decoupled_weight_decay: Optional[bool] = None
    # Linear scaling rule (Goyal et al. 2017): with a value B, the lr used is
    # optim.lr * data.batch_size / B. null: optim.lr as given.
    reference_batch_size: Optional[int] = None
    # Clip the global gradient norm to this value before each step; null: off.
    clip_grad_norm: Optional[float] = None


@dataclass
class ScheduleConfig:
    # constant | step | multistep | cosine | poly | onecycle | plateau
    name: ScheduleName = ScheduleName.cosine
    # Linear warm-up from 0 to the lr over this many epochs (fractions allowed).
    warmup_epochs: float = 0.0
    # step: multiply the lr by `gamma` every `step_size` epochs.
    step_size: int = 30
    # multistep: multiply the lr by `gamma` at each of these epochs.
    milestones: List[int] = field(default_factory=list)
    # step, multistep, plateau: the factor at each drop.
    gamma: float = 0.1
    # poly: (1 - progress) ** power.
    power: float = 1.0
    # cosine, poly, onecycle: the lr at the end, as a fraction of the peak lr.
    final_lr_fraction: float = 0.0
    # onecycle: the share of the run spent rising to the peak lr.
    peak_fraction: float = 0.3
    # plateau: drop when val top-1 has not beaten its best by more than
    # `threshold` points for more than `patience` epochs.
    patience: int = 2
    threshold: float = 0.0


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
    # true exempts normalisation layers and the biases of conv/linear layers
    # from weight decay (chosen by module type).
    no_decay_norm_bias: bool = False


@dataclass
class TrainerConfig:
    epochs: int = 30
    # Processes on this machine, one per GPU (or CPU processes with gloo);
    # -1: one per visible GPU. data.batch_size is the global batch they share.
    devices: int = 1
    # auto | cpu | cuda
    accelerator: Accelerator = Accelerator.auto
    # null | auto (continue this run's folder, or the newest run of this model
    # and data under ./outputs) | a checkpoint file or run folder
    resume: Optional[str] = None
    # auto (bf16 on a GPU that has it, else fp16 on GPU; fp32 on CPU) | fp32 | bf16 | fp16 (GPU only)
    precision: Precision = Precision.auto
    # Channels-last memory layout; null: on for CUDA, off for the CPU.
    channels_last: Optional[bool] = None
    # torch.compile the model (slower start, faster steps on a GPU).
    compile: bool = False
    # Also save checkpoints/last.pt every N optimizer steps (0: at epoch ends only).
    checkpoint_every_n_steps: int = 0
    # Train loss and lr to TensorBoard (and the NaN check) every N steps.
    log_every_n_steps: int = 50
    # Torch intra-op threads; null leaves torch's default.
    threads: Optional[int] = None
    progress_bar: bool = True
    # Several processes (trainer.devices > 1 or torchrun): BatchNorm statistics
    # over the global batch (GPU only), and how long a collective may wait for
    # a slow or dead process before the run fails.
    sync_batchnorm: bool = False
    dist_timeout_s: float = 1800.0


@dataclass
class EvalConfig:
    # 1 | 2 (with the mirror image) | 10 (AlexNet) | 144 (GoogLeNet); see
    # cnnbench/data/views.py. 10 and 144 need a folder dataset (imagenet).
    crops: int = 1
    split: Split = Split.val
    # Folder datasets: shorter side in pixels before the centre crop (crops
    # 1, 2) or the central square of the 10 crops. null: the training view's
    # scale, as torchvision's and timm's references pair them: augment.resize
    # for augment.crop=center/random (the same resize, a centre crop instead of
    # a random one), input size / 0.875 for random_resized (256 for 224, timm's
    # crop_pct). For training runs a number must agree with augment.resize
    # (center/random), or keep the centre crop at least as large a share of
    # the image as augment.area's smallest patch (random_resized): a network
    # scored at another scale than it trained at scores near chance.
    resize: Optional[int] = None
    # Folder datasets, crops=144: the shorter sides of GoogLeNet's 4 scales.
    scales: List[int] = field(default_factory=lambda: [256, 288, 320, 352])


@dataclass
class ExperimentInfo:
    """What a prepared ablation (conf/experiment/*.yaml) re-runs: metadata for people, tests
    and reports; nothing here changes a run."""

    paper: Optional[str] = None
    claim: Optional[str] = None
    # The paper's figure and how it was measured, e.g. {top1_error: [40.7, 42.1], protocol: "..."}.
    published: Dict[str, Any] = field(default_factory=dict)
    # The arm the others are compared with, as KEY=VALUE of a swept key (report.baseline's form).
    baseline: Optional[str] = None
    # What to compare: e.g. "val top-1 after the last epoch".
    metric: Optional[str] = None
    # A short offline variant of the sweep (bundled or synthetic data, few epochs).
    quick: Optional[str] = None
    # A level the report counts epochs to, per arm: {metric: train_error, value: 25} (AlexNet's
    # Figure 1: epochs to 25% training error). metric: train_error | val_error | train_top1 |
    # val_top1 | val_top5 (errors are reached at or below value, accuracies at or above).
    target: Dict[str, Any] = field(default_factory=dict)


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
    # Set by conf/experiment/ files: the paper, claim and baseline of the ablation.
    experiment: ExperimentInfo = field(default_factory=ExperimentInfo)


@dataclass
class EvalDataOverrides:
    """What `cnnbench eval` may change about the checkpoint's own dataset (null: the run's)."""

    root: Optional[str] = None
    batch_size: Optional[int] = None
    # Folder datasets: how the images are read, which may differ on this machine.
    on_corrupt: Optional[OnCorrupt] = None
    workers: Optional[int] = None
    gpu_decode: Optional[bool] = None


@dataclass
class EvalCommandConfig:
    # A checkpoint file, or a run folder (its checkpoints/last.pt).
    checkpoint: Optional[str] = None
    # A run folder: the same as checkpoint=FOLDER.
    run: Optional[str] = None
    run_name: str = "eval"
    data: EvalDataOverrides = field(default_factory=EvalDataOverrides)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # auto | cpu | cuda
    accelerator: Accelerator = Accelerator.auto


@dataclass
class SummaryOptions:
    # table | json
    format: SummaryFormat = SummaryFormat.table
    # (channels, height, width) to summarise at; null: the model's input size.
    input_size: Optional[List[int]] = None


@dataclass
class SummaryCommandConfig(TrainConfig):
    """`cnnbench summary` composes the same groups as `train`, plus its own options."""

    run_name: str = "summary"
    summary: SummaryOptions = field(default_factory=SummaryOptions)


@dataclass
class BenchOptions:
    # train: forward, backward and optimizer step (the loop's own step); infer: forward only.
    mode: BenchMode = BenchMode.train
    # Steps run before timing (cudnn autotuning, allocator warm-up, compilation).
    warmup_steps: int = 5
    # Timed windows of `steps` steps each; the device is synchronised at window ends only.
    windows: int = 5
    steps: int = 10
    # Also time a bare hand-written loop (fp32, default layout, eager) on the same network
    # and print the ratio.
    baseline: bool = False
    # table | json
    format: SummaryFormat = SummaryFormat.table


@dataclass
class BenchCommandConfig(TrainConfig):
    """`cnnbench bench` composes the same groups as `train` (the model, data shape, trainer
    speed switches, optimizer), plus its own options."""

    run_name: str = "bench"
    bench: BenchOptions = field(default_factory=BenchOptions)


class ReportFormat(Choice):
    table = "table"
    json = "json"
    csv = "csv"


@dataclass
class ReportOptions:
    # Sweep or run folders, searched recursively for run folders (those with a config.yaml);
    # `cnnbench report DIR...` fills it from the bare arguments.
    paths: List[str] = field(default_factory=list)
    # The group the others are compared with, as KEY=VALUE[,KEY=VALUE] of varying keys
    # (e.g. regularization.lrn=true); null: the first group found.
    baseline: Optional[str] = None
    # Where report.md, report.csv, the plots and tb_report/ go; null: the first of `paths`.
    out: Optional[str] = None
    # What is printed: table | json | csv.
    format: ReportFormat = ReportFormat.table
    # More dotted config keys (or key prefixes) that never split groups, e.g. [trainer.epochs].
    ignore: List[str] = field(default_factory=list)


@dataclass
class ReportCommandConfig:
    run_name: str = "report"
    report: ReportOptions = field(default_factory=ReportOptions)


def plain(cfg) -> Any:
    """A config as plain, resolved Python values (choices as strings): what is stored
    in checkpoints, config files and results, and sent to other processes."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def input_shape(cfg) -> tuple:
    """(channels, height, width) the run's network takes: the model's own size, else the dataset's."""
    if cfg.model.get("input_size"):
        return tuple(cfg.model.input_size)
    return (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)


SCHEMAS = {"train": TrainConfig, "eval": EvalCommandConfig, "summary": SummaryCommandConfig, "bench": BenchCommandConfig,
           "report": ReportCommandConfig}


def register_schemas() -> None:
    store = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        store.store(name=f"{command}_schema", node=schema)
