"""Every range and cross-key rule of a composed config, checked in one place.

Hydra and the schema (cnnbench/config.py) already refuse unknown keys,
wrong types and unknown choices (the ``Choice`` enums) while composing;
:func:`validate` holds what a type cannot say (ranges, keys that must
agree). It runs before any folder, dataset or model is touched, so a
mistake costs nothing.

The rules depend on the config alone, so a config gets the same verdict on
every machine. What depends on the machine (is there a CUDA GPU, how many
processes share a batch under torchrun) or on the data (labels against
``data.num_classes``, the images' shape against the model's input, a batch
larger than the training set) is checked where that is known: the device,
distributed and data modules.

A resumed run's config and a checkpoint's are plain (not schema-typed)
configs, so the rules compare choices as strings, which the ``Choice``
enums also are.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Sequence, Tuple

from omegaconf import DictConfig

from cnnbench.config import CROP_COUNTS, FOLDER_DATASETS, IN_MEMORY_CROP_COUNTS, input_shape
from cnnbench.errors import UserError


def validate(cfg: DictConfig, command: str = "train") -> None:
    """Raise UserError, in one line naming the key, for the first rule ``cfg`` breaks.

    ``command`` picks the rules that matter to what runs next: ``train`` all
    of them; ``eval`` (a checkpoint's config with the eval command's changes)
    those of the model, data and evaluation, since the training settings are
    the finished run's and cannot be changed from `cnnbench eval`;
    ``summary`` those of the model and its input.
    """
    for check in RULES[command]:
        check(cfg)


def require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plain(values):
    """A list node as a list for messages (None stays None)."""
    return None if values is None else list(values)


def is_folder_data(cfg: DictConfig) -> bool:
    return cfg.data.name in FOLDER_DATASETS


# eval.resize=null with augment.crop=random_resized: the centre crop is this share of the
# shorter side (torchvision's 224 of 256, timm's default crop_pct).
CROP_FRACTION = 0.875


def eval_resize(cfg: DictConfig) -> int:
    """The shorter side folder images are resized to for evaluation: ``eval.resize``, else (null)
    the training view's scale: ``augment.resize`` for the center and random crops, the input
    size / 0.875 for random_resized."""
    if cfg.eval.resize is not None:
        return int(cfg.eval.resize)
    if cfg.augment.crop in ("center", "random"):
        return int(cfg.augment.resize)
    return int(input_shape(cfg)[1] / CROP_FRACTION)


# --------------------------------------------------------------------------- the run: seed, trainer


def check_seed(cfg: DictConfig) -> None:
    # The data order is drawn from numpy's SeedSequence([seed, epoch]), which takes no negative numbers.
    require(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}")


def check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    require(trainer.epochs >= 1, f"trainer.epochs must be at least 1, got {trainer.epochs}")
    require(trainer.devices == -1 or trainer.devices >= 1,
            f"trainer.devices must be a number of processes (>= 1) or -1 (one per GPU), got {trainer.devices}")
    require(trainer.log_every_n_steps >= 1,
            f"trainer.log_every_n_steps must be at least 1, got {trainer.log_every_n_steps}")
    require(trainer.threads is None or trainer.threads >= 1,
            f"trainer.threads must be at least 1 (or null for torch's default), got {trainer.threads}")
    require(trainer.checkpoint_every_n_steps >= 0,
            "trainer.checkpoint_every_n_steps must be >= 0 (0: at epoch ends only), "
            f"got {trainer.checkpoint_every_n_steps}")
    require(finite(trainer.dist_timeout_s) and trainer.dist_timeout_s > 0,
            f"trainer.dist_timeout_s must be a positive number of seconds, got {trainer.dist_timeout_s}")
    # Only the explicit CPU is refused here: with accelerator=auto, whether there
    # is a GPU is known on the machine that runs (engine/speed.py checks it there),
    # and a config must get the same verdict wherever it is validated.
    require(not (trainer.precision == "fp16" and trainer.accelerator == "cpu"),
            "trainer.precision=fp16 needs a CUDA GPU, but trainer.accelerator=cpu; on the CPU use bf16 or fp32")


# --------------------------------------------------------------------------- optimizer and schedule


def check_optim(cfg: DictConfig) -> None:
    optim, reg = cfg.optim, cfg.regularization
    require(finite(optim.lr) and optim.lr > 0, f"optim.lr must be positive, got {optim.lr}")
    require(optim.reference_batch_size is None or optim.reference_batch_size >= 1,
            "optim.reference_batch_size must be at least 1 (or null for no lr scaling), "
            f"got {optim.reference_batch_size}")
    require(optim.clip_grad_norm is None or (finite(optim.clip_grad_norm) and optim.clip_grad_norm > 0),
            f"optim.clip_grad_norm must be positive (or null for no clipping), got {optim.clip_grad_norm}")
    require(len(optim.betas) == 2 and all(0 <= beta < 1 for beta in optim.betas),
            f"optim.betas must be two numbers in [0, 1), got {list(optim.betas)}")
    require(finite(optim.eps) and optim.eps > 0, f"optim.eps must be positive, got {optim.eps}")
    require(0 <= reg.momentum < 1, f"regularization.momentum must be in [0, 1), got {reg.momentum}")
    require(finite(reg.weight_decay) and reg.weight_decay >= 0,
            f"regularization.weight_decay must be >= 0, got {reg.weight_decay}")
    require(not optim.nesterov or (optim.name == "sgd" and reg.momentum > 0),
            f"optim.nesterov=true needs optim.name=sgd and regularization.momentum > 0, "
            f"got optim.name={optim.name} and momentum {reg.momentum}")
    require(reg.dropout is None or 0 <= reg.dropout < 1,
            f"regularization.dropout must be in [0, 1) (or null for each model's own), got {reg.dropout}")
    require(0 <= reg.label_smoothing < 1,
            f"regularization.label_smoothing must be in [0, 1), got {reg.label_smoothing}")


def check_schedule(cfg: DictConfig) -> None:
    sched = cfg.schedule
    require(sched.step_size >= 1, f"schedule.step_size must be at least 1 epoch, got {sched.step_size}")
    require(all(m >= 1 for m in sched.milestones),
            f"schedule.milestones must be epochs >= 1, got {list(sched.milestones)}")
    require(sched.name != "multistep" or len(sched.milestones) > 0,
            "schedule=multistep needs schedule.milestones, the epochs at which the lr drops, e.g. [30, 60]")
    require(finite(sched.warmup_epochs) and sched.warmup_epochs >= 0,
            f"schedule.warmup_epochs must be >= 0, got {sched.warmup_epochs}")
    require(0 < sched.gamma <= 1, f"schedule.gamma must be in (0, 1], got {sched.gamma}")
    require(finite(sched.power) and sched.power > 0, f"schedule.power must be > 0, got {sched.power}")
    require(0 <= sched.final_lr_fraction <= 1,
            f"schedule.final_lr_fraction must be in [0, 1], got {sched.final_lr_fraction}")
    require(0 < sched.peak_fraction < 1, f"schedule.peak_fraction must be in (0, 1), got {sched.peak_fraction}")
    require(sched.patience >= 0, f"schedule.patience must be >= 0, got {sched.patience}")
    require(finite(sched.threshold) and sched.threshold >= 0,
            f"schedule.threshold must be >= 0 (points of top-1), got {sched.threshold}")


# --------------------------------------------------------------------------- data, model input


def check_data_shape(cfg: DictConfig, reads_folders: bool = False) -> None:
    """``reads_folders``: the command reads the data (train, eval), so a folder dataset may
    leave data.num_classes to its class folders; summary and bench read none."""
    data = cfg.data
    if data.num_classes is None:
        require(is_folder_data(cfg) and reads_folders,
                f"data.num_classes is null, which only a folder dataset's training run fills in (from its class "
                f"folders); data={data.name} here needs a number: set data.num_classes=N"
                if not is_folder_data(cfg) else
                "data.num_classes is null (counted from the class folders when the data is read), but this "
                "command reads no data: set data.num_classes=N")
    for key in ("num_classes", "channels", "image_size"):
        require(data[key] is None or data[key] >= 1, f"data.{key} must be at least 1, got {data[key]}")


def check_data(cfg: DictConfig) -> None:
    data = cfg.data
    check_data_shape(cfg, reads_folders=True)
    require(data.batch_size >= 1, f"data.batch_size must be at least 1, got {data.batch_size}")
    require(data.eval_batch_size is None or data.eval_batch_size >= 1,
            f"data.eval_batch_size must be at least 1 (or null to use data.batch_size), got {data.eval_batch_size}")
    require(data.workers >= 0, f"data.workers must be >= 0, got {data.workers}")
    for key in ("mean", "std"):
        require(data[key] is not None or is_folder_data(cfg),
                f"data.{key} is null, which only folder datasets compute (from their training images); "
                f"data={data.name} needs one value per channel: set data.{key}=[...]")
        require(data[key] is None or len(data[key]) == data.channels,
                f"data.{key} needs one value per channel (data.channels={data.channels}), got {plain(data[key])}")
    require(data.std is None or all(finite(s) and s > 0 for s in data.std),
            f"data.std must all be positive, got {plain(data.std)}")
    if data.name == "synthetic":
        check_synthetic_sizes(data, ("train", "val"))
    if is_folder_data(cfg):
        check_folder_data(cfg)


def check_folder_data(cfg: DictConfig) -> None:
    data = cfg.data
    require(data.channels in (1, 3),
            f"data.channels={data.channels}: data={data.name} decodes images as grey (1) or RGB (3); set 1 or 3")
    # Only data=folder: imagenet has a default place under the data root.
    require(data.name != "folder" or bool(data.root),
            "data=folder needs the folder holding train/<class>/ and val/<class>/: set data.root=DIR")


def check_synthetic_sizes(data: DictConfig, splits: Sequence[str]) -> None:
    """data=synthetic makes as many images as it is told; also checked by its loader when called directly."""
    for split in splits:
        count = data.get(f"{split}_size")
        require(count is not None and count >= 1,
                f"data=synthetic needs data.{split}_size (the number of {split} images) of at least 1, got {count}")


def check_model(cfg: DictConfig) -> None:
    size = cfg.model.get("input_size")
    require(size is None or (len(size) == 3 and all(n >= 1 for n in size)),
            f"model.input_size must be [channels, height, width] (or null for the dataset's), got {plain(size)}")
    groups = cfg.model.get("norm_groups", 1)
    require(groups >= 1, f"model.norm_groups must be at least 1, got {groups}")


def check_folder_input(cfg: DictConfig) -> None:
    """Folder data is cut into square crops of the model's input size (model.input_size, else
    data.image_size), decoded with data.channels: the model must take that many channels."""
    if is_folder_data(cfg):
        shape, channels = input_shape(cfg), cfg.data.channels
        require(shape[0] == channels and shape[1] == shape[2],
                f"data={cfg.data.name} gives square {'grey' if channels == 1 else 'RGB'} crops ({channels}, N, N) "
                f"(data.channels={channels}), but model '{cfg.model.name}' takes inputs of shape {tuple(shape)} "
                "(model.input_size, else data.channels and data.image_size); "
                "pick a model that takes them, or set data.channels to the model's channels (1: grey, 3: RGB)")


# --------------------------------------------------------------------------- augmentation


def check_augment(cfg: DictConfig) -> None:
    augment = cfg.augment
    require(augment.crop_padding >= 0, f"augment.crop_padding must be >= 0, got {augment.crop_padding}")
    require(len(augment.area) == 2 and 0 < augment.area[0] <= augment.area[1] <= 1,
            f"augment.area must be [low, high] with 0 < low <= high <= 1, got {list(augment.area)}")
    require(len(augment.aspect) == 2 and 0 < augment.aspect[0] <= augment.aspect[1],
            f"augment.aspect must be [low, high] with 0 < low <= high, got {list(augment.aspect)}")
    require(finite(augment.pca_lighting) and augment.pca_lighting >= 0,
            f"augment.pca_lighting is the std of the PCA weights and must be >= 0, got {augment.pca_lighting}")
    if is_folder_data(cfg):
        check_folder_augment(cfg)
    else:
        require(augment.crop == "center",
                f"augment={augment.name} (augment.crop={augment.crop}) needs a folder dataset such as data=imagenet; "
                f"data={cfg.data.name} is held in memory and takes crop_padding, hflip and pca_lighting only")
    # The principal components are those of ImageNet's RGB pixels.
    require(not augment.pca_lighting or cfg.data.channels == 3,
            f"augment.pca_lighting={augment.pca_lighting} shifts RGB colours, but data.channels={cfg.data.channels} "
            "gives grey images; set augment.pca_lighting=0")


def check_folder_augment(cfg: DictConfig) -> None:
    augment, size = cfg.augment, input_shape(cfg)[1]
    require(not augment.crop_padding,
            f"augment '{augment.name}' pads and crops in-memory images (augment.crop_padding={augment.crop_padding}); "
            "folder datasets such as imagenet use augment=alexnet, augment=inception or augment=none")
    # random_resized scales its patch to the input size; the other crops cut it from the resized image.
    require(augment.crop == "random_resized" or augment.resize >= size,
            f"augment.resize={augment.resize} is smaller than the network's {size}x{size} input; "
            f"resize the shorter side to at least {size}")


# --------------------------------------------------------------------------- evaluation


def check_eval(cfg: DictConfig) -> None:
    crops, folder = cfg.eval.crops, is_folder_data(cfg)
    allowed = CROP_COUNTS if folder else IN_MEMORY_CROP_COUNTS
    why = " (in-memory images are already the network's input size)" if crops in CROP_COUNTS and not folder else ""
    require(crops in allowed,
            f"eval.crops={crops} is not available{why}; choose one of: {', '.join(map(str, allowed))}")
    if folder:
        check_eval_sizes(cfg)


def check_eval_sizes(cfg: DictConfig) -> None:
    """Folder data: every evaluation box must fit inside its resized image."""
    crops, size = cfg.eval.crops, input_shape(cfg)[1]
    if crops == 144:
        scales = list(cfg.eval.scales)
        require(len(scales) > 0 and min(scales) >= size,
                f"eval.scales {scales} must all be at least the {size}-pixel crop for eval.crops=144")
    else:
        resize = eval_resize(cfg)
        require(resize >= size,
                f"eval.resize={resize}{'' if cfg.eval.resize is not None else ' (from augment.resize)'} is smaller "
                f"than the network's {size}x{size} input; raise it to at least {size}")


def check_views_agree(cfg: DictConfig) -> None:
    """Training: evaluation must see images at the scale training did (see eval_resize)."""
    resize = cfg.eval.resize
    if not is_folder_data(cfg) or resize is None:
        return
    augment, size = cfg.augment, input_shape(cfg)[1]
    if augment.crop in ("center", "random"):
        require(resize == augment.resize,
                f"eval.resize={resize} and augment.resize={augment.resize} disagree: training crops {size}x{size} out "
                f"of images resized to {augment.resize}, evaluation out of images resized to {resize}, a scale the "
                f"network never trained at; set eval.resize={augment.resize} (or null, which follows augment.resize) "
                f"or augment.resize={resize}")
        return
    # random_resized: patches of augment.area of the image; the centre crop is (size / resize)^2 of
    # the shorter side's square, and must not show objects larger than any training patch did.
    smallest = float(augment.area[0])
    largest_resize = int(size / math.sqrt(smallest) + 1e-9)
    require(resize <= largest_resize,
            f"eval.resize={resize} makes evaluation's {size}x{size} centre crop {(size / resize) ** 2:.1%} of the "
            f"image, a smaller share than augment.area's smallest training patch ({smallest:.0%}), so objects "
            f"look larger than training ever showed them; set eval.resize to at most {largest_resize} "
            f"(or null: {int(size / CROP_FRACTION)}, the usual 0.875 centre crop)")


# --------------------------------------------------------------------------- cnnbench summary


def check_summary(cfg: DictConfig) -> None:
    size = cfg.summary.input_size
    require(size is None or (len(size) == 3 and all(n >= 1 for n in size)),
            f"summary.input_size needs [channels, height, width], got {plain(size)}")


Rule = Callable[[DictConfig], None]
def check_bench(cfg: DictConfig) -> None:
    bench = cfg.bench
    for key in ("warmup_steps", "windows", "steps"):
        require(bench[key] >= (0 if key == "warmup_steps" else 1),
                f"bench.{key} must be at least {0 if key == 'warmup_steps' else 1}, got {bench[key]}")


RULES: Dict[str, Tuple[Rule, ...]] = {
    "train": (check_seed, check_trainer, check_optim, check_schedule, check_data, check_model, check_folder_input,
              check_augment, check_eval, check_views_agree),
    # eval keeps the finished run's training views; evaluating at another eval.resize is
    # the user's deliberate choice there (e.g. testing at a higher resolution).
    "eval": (check_data, check_model, check_folder_input, check_eval),
    # summary builds the model alone: no data is read, so no folder-data rules.
    "summary": (check_data_shape, check_model, check_summary),
    # bench times the model on random inputs of the data's shape with the run's trainer and optimizer.
    "bench": (check_seed, check_trainer, check_optim, check_schedule, check_data_shape, check_model, check_bench),
}
