"""`cnnbench train`: one plain training loop, top to bottom.

build data, model, optimizer, schedule -> (resume) -> for each epoch:
train over the epoch's batches (saving on request or every N steps),
evaluate on the validation split, log, save ``last.pt`` (and ``best.pt``)
-> write ``results.json``.

Resuming is exact: the data order and augmentation of a batch depend on
(seed, epoch, position) only, and a checkpoint holds every random stream
and running sum of the step it was taken at, so a run stopped anywhere
(even killed) and resumed ends with the same weights, bit for bit on CPU,
as one that never stopped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import logging.config
import math
import os
import platform
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torchvision
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import cnnbench
from cnnbench.engine.checkpoint import (
    copy_file, load_checkpoint, load_weights, restore_rng, rng_state, save_checkpoint, write_json, write_text,
)
from cnnbench.engine.distributed import (
    DistributedContext, all_gather_object, all_reduce_sum, barrier, broadcast_buffers, broadcast_object, launch,
    setup, teardown, world_size, wrap_model,
)
from cnnbench.engine.evaluate import evaluate, format_metrics
from cnnbench.engine.metrics import topk_correct
from cnnbench.engine.optim import base_lr, make_optimizer
from cnnbench.engine.preemption import Preempted, PreemptionFlag
from cnnbench.engine.resume import checkpoint_to_resume, resumed_config
from cnnbench.engine.runtime import input_shape, loader_for, model_for, seed_everything
from cnnbench.engine.schedule import make_schedule
from cnnbench.engine.speed import Speed, speed_for
from cnnbench.errors import UserError
from cnnbench.models import classification_loss, count_parameters, main_logits
from cnnbench.models.summary import summarize

log = logging.getLogger("cnnbench")


def train_command(cfg: DictConfig) -> Optional[float]:
    hydra_cfg = HydraConfig.get()
    model_file = hydra_cfg.runtime.choices.get("model")
    source = f"conf/model/{model_file}.yaml" if model_file else None
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.trainer.resume:
        state = load_checkpoint(checkpoint_to_resume(cfg.trainer.resume, run_dir))
        cfg = resumed_config(state["config"], cfg, list(hydra_cfg.overrides.task))
        del state
    check_trainer(cfg)
    devices = process_count(cfg.trainer)
    if devices > 1 and "WORLD_SIZE" not in os.environ:
        # trainer.devices=N: start N workers the way torchrun would; this
        # process owns the run folder and waits for them.
        log_config = OmegaConf.to_container(hydra_cfg.job_logging, resolve=True)
        config = OmegaConf.to_container(cfg, resolve=True)
        try:
            results = launch(devices, train_worker, config, str(run_dir), source, log_config)[0]
        except SignalException as stop:  # this process was told to stop; the workers saved and stopped
            log.info(f"stopped by {signal_name(stop.sigval)}; continue with: cnnbench train trainer.resume={run_dir}")
            raise SystemExit(0) from None
    else:
        results = train_worker(cfg, str(run_dir), source)
    if results is None:  # preempted: stop the whole command, a sweep's later jobs too
        raise SystemExit(0)
    return results["top1"]  # what a Hydra sweeper optimises


def train_worker(cfg, run_dir: str, source: Optional[str], log_config: Optional[dict] = None) -> Optional[dict]:
    """One process's training (the only one, or one of several)."""
    if log_config is not None and os.environ.get("RANK", "0") == "0":
        logging.config.dictConfig(log_config)  # a started worker logs like the Hydra job
    try:
        return train(OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg, Path(run_dir), source)
    except Preempted as stop:
        log.info(str(stop))
        return None


def signal_name(signum) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def process_count(trainer: DictConfig) -> int:
    if trainer.devices == -1:
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError("trainer.devices=-1 starts one process per GPU, but torch sees no CUDA GPU")
        return count
    if trainer.devices < 1:
        raise UserError(f"trainer.devices must be a number of processes (>= 1) or -1 (one per GPU), got {trainer.devices}")
    return trainer.devices


@dataclass
class Progress:
    """Where a run is: what a checkpoint needs besides the weights and optimizer."""

    epoch: int = 0  # finished epochs
    step: int = 0  # optimizer steps done in the current epoch
    best_top1: float = -1.0
    best_epoch: Optional[int] = None
    history: list = field(default_factory=list)  # one record per finished epoch


class EpochSums:
    """Training loss and top-1 of an epoch, accumulated on the device (no host sync per step)."""

    def __init__(self, device: torch.device, saved: Optional[dict] = None):
        saved = saved or {}
        self.loss = saved.get("loss", torch.zeros((), dtype=torch.float64)).to(device)
        self.correct = saved.get("correct", torch.zeros((), dtype=torch.long)).to(device)
        self.seen = saved.get("seen", 0)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += loss.double() * len(labels)
        self.correct += topk_correct(logits, labels, [1])[0]
        self.seen += len(labels)

    def state(self) -> dict:
        return {"loss": self.loss.cpu(), "correct": self.correct.cpu(), "seen": self.seen}

    def result(self) -> dict:
        """The epoch's mean loss and top-1 over every process's samples."""
        loss, correct = all_reduce_sum(self.loss.clone()), all_reduce_sum(self.correct.clone())
        seen = int(all_reduce_sum(torch.tensor(self.seen, device=self.loss.device)).item())
        return {"loss": loss.item() / max(seen, 1), "top1": 100.0 * correct.item() / max(seen, 1)}


class NoWriter:
    """What processes other than the first log to TensorBoard: nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def train(cfg: DictConfig, run_dir: Path, model_source: Optional[str] = None) -> dict:
    ctx = setup(cfg.trainer.accelerator, cfg.trainer.dist_timeout_s)
    try:
        return train_in(ctx, cfg, run_dir, model_source)
    finally:
        teardown()


def train_in(ctx: DistributedContext, cfg: DictConfig, run_dir: Path, model_source: Optional[str]) -> dict:
    """The run, as process ``ctx.rank`` of ``ctx.world_size``; only the first writes files and logs."""
    started = time.perf_counter()
    device = ctx.device
    if ctx.world_size > 1:
        run_dir = Path(broadcast_object(str(run_dir)))  # under torchrun every process composed its own
        if not ctx.is_main:
            log.setLevel(logging.WARNING)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    speed = speed_for(cfg.trainer, device)
    seed_everything(cfg.seed)  # before the model is built: it draws the initial weights

    shard = {"rank": ctx.rank, "world_size": ctx.world_size}
    train_loader = loader_for(cfg, "train", device, train=True, **shard)
    val_loader = loader_for(cfg, "val", device, train=False, **shard)
    # Built now, so a bad eval.crops/resize/scales fails before training, not after it.
    views = loader_for(cfg, "val", device, train=False, crops=cfg.eval.crops, **shard) if cfg.eval.crops != 1 else None
    if len(train_loader) == 0:
        raise UserError(
            f"data.batch_size={cfg.data.batch_size} is larger than the training set "
            f"({len(train_loader.labels)} images); lower it"
        )
    model = model_for(cfg, model_source).to(device)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    macs = sum(row.macs for row in summarize(model, input_shape(cfg)))
    optimizer = make_optimizer(cfg, model)
    schedule = make_schedule(cfg, optimizer, base_lr(cfg), len(train_loader))
    step_model = wrap_model(model, ctx, cfg.trainer.sync_batchnorm)  # DDP with several processes
    if cfg.trainer.compile:
        step_model = torch.compile(step_model)
    if ctx.world_size > 1:  # the same weights everywhere, but each process its own dropout masks
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, ctx.rank]).generate_state(1)[0]))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    num_classes = cfg.data.num_classes

    progress, resumed_from, resumed_sums = Progress(), None, None
    if cfg.trainer.resume:
        state = load_checkpoint(checkpoint_to_resume(cfg.trainer.resume, run_dir))
        if "progress" not in state:
            raise UserError(f"{state['path']} was written by an older cnnbench and cannot be resumed; start a new run")
        load_weights(model, state)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if speed.scaler is not None and state.get("scaler"):
            speed.scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        ranks = state["ranks"]
        if len(ranks) != ctx.world_size and progress.step > 0:
            raise UserError(
                f"{state['path']} was taken mid-epoch by {len(ranks)} process(es); resume it with "
                f"trainer.devices={len(ranks)}, or from an end-of-epoch checkpoint"
            )
        mine = ranks[min(ctx.rank, len(ranks) - 1)]
        resumed_sums = mine["sums"]
        restore_rng(mine["rng"])
        resumed_from = state["path"]
        log.info(f"resumed from {resumed_from} at epoch {progress.epoch + 1}, step {progress.step}")

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    params = count_parameters(model)
    log.info(
        f"{cfg.model.name}: {params:,} parameters, {macs / 1e6:,.1f} M MACs, input {tuple(model.input_shape)} | "
        f"{cfg.data.name}: {len(train_loader.labels)} train / {len(val_loader.labels)} val images | "
        f"{device}{f' x {ctx.world_size} processes' if ctx.world_size > 1 else ''}, {speed.precision}"
        f"{', channels-last' if speed.channels_last else ''}"
        f"{', compiled' if cfg.trainer.compile else ''} | run folder {run_dir}"
    )

    def save(path: Path, metrics: dict, sums: Optional[EpochSums] = None) -> None:
        """Every process hands in its random streams and running sums; the first writes the file."""
        ranks = all_gather_object({"rng": rng_state(), "sums": sums.state() if sums is not None else None})
        if ctx.is_main:
            save_checkpoint(path, {
                "format": 2, "cnnbench_version": cnnbench.__version__, "config": resolved,
                "epoch": progress.epoch, "metrics": metrics, "progress": asdict(progress), "ranks": ranks,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "scaler": speed.scaler.state_dict() if speed.scaler is not None else None,
            })

    writer = SummaryWriter(str(run_dir / "tb")) if ctx.is_main else NoWriter()
    metrics: dict = progress.history[-1]["val"] if progress.history else {}
    steps_per_epoch = len(train_loader)
    try:
        with PreemptionFlag() as preemption:
            for epoch in range(progress.epoch, cfg.trainer.epochs):
                epoch_started = time.perf_counter()
                epoch_lr = schedule.lr
                sums = EpochSums(device, resumed_sums)
                resumed_sums = None

                def after_step(steps_done: int) -> None:
                    """Save mid-epoch when asked to, or every N steps."""
                    every = cfg.trainer.checkpoint_every_n_steps
                    due = bool(every) and (epoch * steps_per_epoch + steps_done) % every == 0
                    stop = preemption.requested
                    if ctx.world_size > 1:
                        # All processes stop at the same step or none does; they agree at the
                        # steps that sync anyway (logging, checkpoints), not at every step.
                        if not (due or steps_done % cfg.trainer.log_every_n_steps == 0 or steps_done == steps_per_epoch):
                            return
                        stop = bool(all_reduce_sum(torch.tensor(int(stop), device=device)).item())
                    if not stop and not due:
                        return
                    progress.step = steps_done
                    check_finite(model, sums, epoch, steps_done, cfg)  # never checkpoint weights a NaN has reached
                    save(run_dir / "checkpoints" / "last.pt", metrics, sums)
                    if stop:
                        raise Preempted(
                            f"stopped by {preemption.signal_name or 'a signal'} at epoch {epoch + 1}, step {steps_done}; checkpoint "
                            f"saved; continue with: cnnbench train trainer.resume={run_dir}"
                        )

                train_one_epoch(cfg, step_model, train_loader, optimizer, schedule, speed, epoch, progress.step,
                                sums, writer, after_step, show_progress=ctx.is_main)
                check_finite(model, sums, epoch, steps_per_epoch, cfg)
                train_metrics = sums.result()
                broadcast_buffers(model)  # BatchNorm statistics as the first process has them
                metrics = evaluate(model, val_loader, num_classes)
                seconds = time.perf_counter() - epoch_started
                is_best = metrics["top1"] > progress.best_top1
                if is_best:
                    progress.best_top1, progress.best_epoch = metrics["top1"], epoch + 1
                progress.history.append({"epoch": epoch + 1, "train": train_metrics, "val": metrics,
                                         "lr": epoch_lr, "seconds": seconds})
                progress.epoch, progress.step = epoch + 1, 0
                schedule.end_epoch(metrics["top1"])
                log.info(
                    f"epoch {epoch + 1}/{cfg.trainer.epochs}  train loss {train_metrics['loss']:.4f}  "
                    f"val {format_metrics(metrics)}  ({seconds:.1f}s)"
                )
                log_epoch(writer, progress.history[-1], len(train_loader.labels), model)
                # best.pt first: a crash in between leaves last.pt one epoch behind, never
                # a last.pt whose record names a best.pt that was not written.
                save(run_dir / "checkpoints" / ("best.pt" if is_best else "last.pt"), metrics)
                if ctx.is_main:
                    if is_best:
                        copy_file(run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt")
                    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in progress.history))
    finally:
        writer.close()

    if cfg.eval.crops != 1:
        # The papers' final numbers: the last epoch's weights on multi-crop views.
        multi_crop = evaluate(model, views, num_classes)
        log.info(f"val with {cfg.eval.crops} crops: {format_metrics(multi_crop)}")
        metrics = {**metrics, **{f"{k}_{cfg.eval.crops}crop": v for k, v in multi_crop.items() if k != "samples"}}
    skipped = sum(all_gather_object(sum(len(getattr(loader, "skipped", {})) for loader in (train_loader, val_loader))))
    if not ctx.is_main:
        barrier()
        return {"top1": metrics.get("top1")}
    results = {
        "model": cfg.model.name, "data": cfg.data.name, "epochs": progress.epoch,
        **{k: metrics.get(k) for k in ("top1", "top5", "loss")},
        **{k: v for k, v in metrics.items() if "crop" in k},
        "best_top1": progress.best_top1, "best_epoch": progress.best_epoch,
        "params": params, "macs": macs, "unreadable_skipped": skipped,
        "wall_time_s": round(time.perf_counter() - started, 2),
        "device": device_name(device), "world_size": ctx.world_size, "batch_size": cfg.data.batch_size,
        "precision": speed.precision, "resumed_from": resumed_from,
        "versions": {"cnnbench": cnnbench.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "python": platform.python_version()},
        "git_commit": git_commit(), "config_hash": config_hash(resolved),
        "checkpoint": str(run_dir / "checkpoints" / "last.pt"),
    }
    write_json(run_dir / "results.json", results)
    write_hparams(run_dir, cfg, results)
    log.info(
        f"done: {cfg.model.name} on {cfg.data.name}, {plural(cfg.trainer.epochs, 'epoch')}, val {format_metrics(metrics)} "
        f"(best top-1 {progress.best_top1:.2f}% at epoch {progress.best_epoch}) "
        f"in {results['wall_time_s']:.1f}s -> {run_dir}"
    )
    barrier()
    return results


def train_one_epoch(cfg, model, loader, optimizer, schedule, speed: Speed, epoch: int, start_step: int,
                    sums: EpochSums, writer: SummaryWriter, after_step: Callable[[int], None],
                    show_progress: bool = True) -> None:
    """One pass over the epoch's batches from ``start_step`` on (non-zero when resuming mid-epoch)."""
    model.train()
    loader.set_epoch(epoch)
    steps = len(loader)
    bar = tqdm(itertools.islice(loader, start_step, None), total=steps, initial=start_step,
               desc=f"epoch {epoch + 1}/{cfg.trainer.epochs}", leave=False, dynamic_ncols=True,
               disable=None if cfg.trainer.progress_bar and show_progress else True)
    for step, (images, labels) in enumerate(bar, start=start_step):
        with speed.autocast():
            output = model(speed.to_input(images))  # logits, or ModelOutput with auxiliary heads in training
            loss = classification_loss(output, labels, cfg.regularization.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        if speed.scaler is not None:  # fp16: scale the loss so small gradients survive
            speed.scaler.scale(loss).backward()
            speed.scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.optim.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
        if speed.scaler is not None:
            speed.scaler.step(optimizer)
            speed.scaler.update()
        else:
            optimizer.step()
        schedule.step()
        sums.add(loss.detach(), main_logits(output).detach(), labels)
        global_step = epoch * steps + step + 1
        if (step + 1) % cfg.trainer.log_every_n_steps == 0 or step + 1 == steps:
            # The one host sync, every log_every_n_steps; averaged over processes so all stop together.
            value = all_reduce_sum(loss.detach().float().clone()).item() / world_size()
            if not math.isfinite(value):
                raise diverged(value, epoch, step + 1, cfg)
            batch_top1 = topk_correct(main_logits(output).detach(), labels, [1])[0].item() / len(labels)
            writer.add_scalar("train/loss_step", value, global_step)
            writer.add_scalar("train/top1_step", 100.0 * batch_top1, global_step)
            writer.add_scalar("train/lr_step", schedule.lr, global_step)
            bar.set_postfix(loss=f"{value:.3f}")
        after_step(step + 1)


def check_finite(model: torch.nn.Module, sums: EpochSums, epoch: int, steps_done: int, cfg: DictConfig) -> None:
    """Stop before weights or a loss that became NaN or infinite reach a checkpoint."""
    total = all_reduce_sum(sums.loss.clone()).item()
    if not math.isfinite(total):
        raise diverged(total, epoch, steps_done, cfg)
    if not bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()):
        raise diverged(float("nan"), epoch, steps_done, cfg, what="the weights")


def diverged(value: float, epoch: int, step: int, cfg: DictConfig, what: str = "the training loss") -> UserError:
    return UserError(
        f"{what} became {value} by step {step} of epoch {epoch + 1}; lower optim.lr "
        f"(now {cfg.optim.lr}) or set optim.clip_grad_norm; the last checkpoint is intact"
    )


def log_epoch(writer: SummaryWriter, record: dict, train_images: int, model: torch.nn.Module) -> None:
    epoch = record["epoch"]
    writer.add_scalar("train/loss", record["train"]["loss"], epoch)
    writer.add_scalar("train/top1", record["train"]["top1"], epoch)
    for key in ("top1", "top5", "loss"):
        if key in record["val"]:
            writer.add_scalar(f"val/{key}", record["val"][key], epoch)
    writer.add_scalar("lr", record["lr"], epoch)
    writer.add_scalar("speed/epoch_seconds", record["seconds"], epoch)
    writer.add_scalar("speed/train_images_per_s", train_images / record["seconds"], epoch)
    filters = first_layer_filters(model)
    if filters is not None:
        writer.add_image("filters/first_layer", filters, epoch)


def first_layer_filters(model: torch.nn.Module) -> Optional[torch.Tensor]:
    """The first convolution's kernels as one image grid (AlexNet, Figure 3): RGB
    kernels in colour, others by their first input channel, each scaled to [0, 1]."""
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None:
        return None
    weights = conv.weight.detach().float().cpu()
    if weights.shape[1] != 3:
        weights = weights[:, :1]
    low = weights.amin(dim=(1, 2, 3), keepdim=True)
    high = weights.amax(dim=(1, 2, 3), keepdim=True)
    weights = (weights - low) / (high - low).clamp_min(1e-12)
    return torchvision.utils.make_grid(weights, nrow=int(math.ceil(math.sqrt(len(weights)))), padding=1, pad_value=1.0)


def write_hparams(run_dir: Path, cfg: DictConfig, results: dict) -> None:
    """One HParams entry per run, so TensorBoard's HParams tab compares a sweep."""
    hparams = {
        "model": cfg.model.name, "data": cfg.data.name, "lr": cfg.optim.lr, "optim": cfg.optim.name,
        "batch_size": cfg.data.batch_size, "epochs": cfg.trainer.epochs, "augment": cfg.augment.name,
        "momentum": cfg.regularization.momentum, "weight_decay": cfg.regularization.weight_decay,
        "dropout": -1.0 if cfg.regularization.dropout is None else cfg.regularization.dropout,
        "lrn": cfg.regularization.lrn, "label_smoothing": cfg.regularization.label_smoothing,
        "schedule": cfg.schedule.name, "norm": cfg.model.norm, "seed": cfg.seed,
    }
    final = {f"hparams/{k}": results[k] for k in ("top1", "top5", "best_top1") if results.get(k) is not None}
    with SummaryWriter(str(run_dir / "tb")) as writer:
        writer.add_hparams(hparams, final, run_name=".")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git_commit() -> Optional[str]:
    """The commit of cnnbench's own code, if it runs from a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(cnnbench.__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def config_hash(resolved: dict) -> str:
    """Identifies the experiment: the resolved config without where or how long it runs."""
    experiment = {k: v for k, v in resolved.items() if k != "trainer"}
    experiment["trainer"] = {k: v for k, v in resolved["trainer"].items() if k not in ("resume", "progress_bar")}
    return hashlib.sha256(json.dumps(experiment, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_trainer(cfg: DictConfig) -> None:
    if cfg.trainer.epochs < 1:
        raise UserError(f"trainer.epochs must be at least 1, got {cfg.trainer.epochs}")
    if cfg.data.batch_size < 1:
        raise UserError(f"data.batch_size must be at least 1, got {cfg.data.batch_size}")
    for key in ("log_every_n_steps",):
        if cfg.trainer[key] < 1:
            raise UserError(f"trainer.{key} must be at least 1, got {cfg.trainer[key]}")
    if cfg.trainer.threads is not None and cfg.trainer.threads < 1:
        raise UserError(f"trainer.threads must be at least 1 (or null for torch's default), got {cfg.trainer.threads}")
    if not 0 <= cfg.regularization.label_smoothing < 1:
        raise UserError(f"regularization.label_smoothing must be in [0, 1), got {cfg.regularization.label_smoothing}")
    if cfg.trainer.checkpoint_every_n_steps < 0:
        raise UserError(f"trainer.checkpoint_every_n_steps must be >= 0, got {cfg.trainer.checkpoint_every_n_steps}")
