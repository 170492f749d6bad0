"""Training: one plain loop, top to bottom.

:func:`run_training` is the whole run: build it, restore it when resuming,
then for each epoch train its steps (saving when due, stopping when asked),
evaluate and save; a final multi-crop evaluation; ``results.json``. The
epoch is a generator of optimizer steps (:func:`train_steps`), so what
happens between steps is decided in the loop itself, not in a callback.

Resuming is exact: the data order and augmentation of a batch depend on
(seed, epoch, position) only, and a checkpoint holds every random stream
and running sum of the step it was taken at, so a run stopped anywhere
(even killed) and resumed ends with the same weights, bit for bit on CPU,
as one that never stopped.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import cnnbench
from cnnbench.config import input_shape, plain
from cnnbench.data.loaders import Loader
from cnnbench.data.pipeline import loader_for
from cnnbench.engine import tensorboard
from cnnbench.engine.checkpoint import (
    copy_file, load_weights, remove_partial_writes, save_checkpoint, write_json, write_text,
)
from cnnbench.engine.distributed import (
    DistributedContext, all_gather_object, all_reduce_sum, barrier, broadcast_buffers, broadcast_object, setup,
    teardown, wrap_model,
)
from cnnbench.engine.evaluate import evaluate, format_metrics
from cnnbench.engine.metrics import topk_correct
from cnnbench.engine.optim import base_lr, make_optimizer
from cnnbench.engine.preemption import Preempted, PreemptionFlag, resume_command
from cnnbench.engine.provenance import hparams, provenance
from cnnbench.engine.schedule import LrSchedule, make_schedule
from cnnbench.engine.speed import Speed, speed_for
from cnnbench.engine.state import TrainState
from cnnbench.errors import UserError
from cnnbench.models import Network, classification_loss, count_parameters, main_logits
from cnnbench.models.api import model_from_config
from cnnbench.models.summary import summarize

log = logging.getLogger("cnnbench")


def train(cfg: DictConfig, run_dir: Path, model_source: Optional[str] = None,
          checkpoint: Optional[dict] = None) -> dict:
    """Train as one process of a run (the only one, or one of torchrun's); ``checkpoint``
    is the loaded checkpoint a resumed run goes on from. Raises Preempted when stopped."""
    ctx = setup(cfg.trainer.accelerator, cfg.trainer.dist_timeout_s)
    try:
        return run_training(ctx, cfg, run_dir, model_source, checkpoint)
    finally:
        teardown()


def run_training(ctx: DistributedContext, cfg: DictConfig, run_dir: Path, model_source: Optional[str] = None,
                 checkpoint: Optional[dict] = None) -> dict:
    """The run, as process ``ctx.rank`` of ``ctx.world_size``; only the first writes files and logs."""
    started = time.perf_counter()  # this segment's start; a resumed run adds the earlier ones'
    # Build every part before anything is written, so a mistake leaves no trace.
    run = build_run(ctx, cfg, run_dir, model_source)
    state = TrainState(started=started)
    # A resumed run goes on with its weights, optimizer, schedule, position and random streams.
    if checkpoint is not None:
        restore(run, state, checkpoint)
    open_run_folder(run, state)
    writer = tensorboard.open_writer(run.run_dir, ctx.is_main)
    try:
        with PreemptionFlag() as preemption:
            for epoch in range(state.epoch, cfg.trainer.epochs):
                # Train: one optimizer step per batch; between steps, save when due and stop when asked.
                state.start_epoch(run.device, run.schedule.lr)
                for step in train_steps(run, state, epoch, writer):
                    due = run.checkpoint_due(epoch, step)
                    stop = agree_to_stop(run, step, due, preemption.requested)
                    if due or stop:
                        save(run, state, "last.pt")
                    if stop:
                        raise Preempted(stop_message(run, preemption.signal_name, epoch, step))
                # Evaluate on the validation split and record the epoch.
                is_best = finish_epoch(run, state, writer)
                # Save: best.pt first, so a crash in between leaves last.pt one epoch
                # behind, never a last.pt whose record names a best.pt not yet written.
                save_epoch(run, state, is_best)
    finally:
        writer.close()
    # The papers' final numbers (multi-crop views of the last weights), then results.json.
    return write_results(run, state, final_metrics(run, state))


@dataclass
class Run:
    """The parts of one training run, built from its config."""

    cfg: DictConfig
    ctx: DistributedContext
    run_dir: Path
    speed: Speed
    train_loader: Loader
    val_loader: Loader
    views: Optional[Loader]  # the multi-crop views of eval.crops > 1, for the final evaluation
    model: Network  # what is evaluated and saved
    step_model: torch.nn.Module  # what training steps call: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule
    macs: int

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def resolved(self) -> dict:
        return plain(self.cfg)

    def checkpoint_path(self, name: str) -> Path:
        return self.run_dir / "checkpoints" / name

    def checkpoint_due(self, epoch: int, step: int) -> bool:
        """trainer.checkpoint_every_n_steps counts steps over the whole run."""
        every = self.cfg.trainer.checkpoint_every_n_steps
        return bool(every) and (epoch * len(self.train_loader) + step) % every == 0


def build_run(ctx: DistributedContext, cfg: DictConfig, run_dir: Path, model_source: Optional[str]) -> Run:
    if ctx.world_size > 1:
        run_dir = Path(broadcast_object(str(run_dir)))  # under torchrun every process composed its own
        if not ctx.is_main:
            log.setLevel(logging.WARNING)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    speed = speed_for(cfg.trainer, ctx.device)
    seed_everything(cfg.seed)  # before the model is built: it draws the initial weights
    shard = {"rank": ctx.rank, "world_size": ctx.world_size}
    train_loader = loader_for(cfg, "train", ctx.device, train=True, **shard)
    val_loader = loader_for(cfg, "val", ctx.device, train=False, **shard)
    # Built now, so a bad eval.crops/resize/scales fails before training, not after it.
    views = loader_for(cfg, "val", ctx.device, train=False, crops=cfg.eval.crops, **shard) if cfg.eval.crops != 1 else None
    if len(train_loader) == 0:
        raise UserError(
            f"data.batch_size={cfg.data.batch_size} is larger than the training set "
            f"({len(train_loader.labels)} images); lower it"
        )
    model = model_from_config(cfg, model_source).to(ctx.device)
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
    return Run(cfg, ctx, run_dir, speed, train_loader, val_loader, views, model, step_model, optimizer, schedule, macs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def restore(run: Run, state: TrainState, checkpoint: dict) -> None:
    load_weights(run.model, checkpoint)
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.schedule.load_state_dict(checkpoint["schedule"])
    if run.speed.scaler.is_enabled() and checkpoint.get("scaler"):
        run.speed.scaler.load_state_dict(checkpoint["scaler"])
    state.load_state_dict(checkpoint, run.ctx.rank, run.ctx.world_size)
    check_unfinished(state.epoch, run.cfg, run.run_dir, checkpoint["path"])
    log.info(f"resumed from {state.resumed_from} at epoch {state.epoch + 1}, step {state.step}")


def check_unfinished(epochs_done: int, cfg: DictConfig, run_dir: Path, checkpoint_path: str) -> None:
    """Refuse to resume a run that has trained all its epochs: it would only rewrite results.json.
    A run killed after its last epoch's checkpoint but before results.json goes on to write it."""
    if epochs_done < cfg.trainer.epochs:
        return
    in_own_folder = Path(checkpoint_path).resolve().parent.parent == Path(run_dir).resolve()
    if in_own_folder and not (Path(run_dir) / "results.json").exists():
        return
    raise UserError(
        f"{checkpoint_path} is a finished run ({plural(epochs_done, 'epoch')} of trainer.epochs="
        f"{cfg.trainer.epochs}); to extend it, resume it with more epochs: "
        f"{resume_command(run_dir)} trainer.epochs={epochs_done + 10}"
    )


def open_run_folder(run: Run, state: TrainState) -> None:
    """config.yaml, and one line saying what runs where."""
    cfg, ctx = run.cfg, run.ctx
    if ctx.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        remove_partial_writes(run.run_dir)  # what a kill mid-write left behind
        write_text(run.run_dir / "config.yaml", OmegaConf.to_yaml(run.resolved))
    log.info(
        f"{cfg.model.name}: {count_parameters(run.model):,} parameters, {run.macs / 1e6:,.1f} M MACs, "
        f"input {tuple(run.model.input_shape)} | {cfg.data.name}: {len(run.train_loader.labels)} train / "
        f"{len(run.val_loader.labels)} val images | {run.device}"
        f"{f' x {ctx.world_size} processes' if ctx.world_size > 1 else ''}, {run.speed.precision}"
        f"{', channels-last' if run.speed.channels_last else ''}"
        f"{', compiled' if cfg.trainer.compile else ''} | run folder {run.run_dir}"
    )
    log.info(f"{run.speed.precision}{' and channels-last' if run.speed.channels_last else ''}: {run.speed.reason}")


def train_steps(run: Run, state: TrainState, epoch: int, writer) -> Iterator[int]:
    """The epoch's optimizer steps from ``state.step`` on (non-zero when resuming
    mid-epoch); yields the number of steps done after each one."""
    cfg, loader = run.cfg, run.train_loader
    run.step_model.train()
    loader.set_epoch(epoch)
    steps = len(loader)
    with tqdm(itertools.islice(loader, state.step, None), total=steps, initial=state.step,
              desc=f"epoch {epoch + 1}/{cfg.trainer.epochs}", leave=False, dynamic_ncols=True,
              disable=None if cfg.trainer.progress_bar and run.ctx.is_main else True) as bar:
        for step, (images, labels) in enumerate(bar, start=state.step + 1):
            loss, logits = train_step(run, images, labels)
            state.sums.add(loss, logits, labels)
            state.step = step
            if step % cfg.trainer.log_every_n_steps == 0 or step == steps:
                # The one host sync, every log_every_n_steps; averaged over processes so all stop together.
                value = all_reduce_sum(loss.float().clone()).item() / run.ctx.world_size
                if not math.isfinite(value):
                    raise diverged(value, epoch, step, cfg)
                top1 = 100.0 * topk_correct(logits, labels, [1])[0].item() / len(labels)
                tensorboard.log_step(writer, epoch * steps + step, value, top1, run.schedule.lr)
                bar.set_postfix(loss=f"{value:.3f}")
            yield step


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor) -> tuple:
    """One optimizer step; the same code for every precision (the scaler is off unless fp16)."""
    speed, scaler = run.speed, run.speed.scaler
    with speed.autocast():
        output = run.step_model(speed.to_input(images))  # logits, or ModelOutput with auxiliary heads
        loss = classification_loss(output, labels, run.cfg.regularization.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # fp16: scaled, so small gradients survive
    if run.cfg.optim.clip_grad_norm:
        scaler.unscale_(run.optimizer)  # clip the true gradients
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.clip_grad_norm)
    scaler.step(run.optimizer)
    scaler.update()
    run.schedule.step()
    return loss.detach(), main_logits(output).detach()


def agree_to_stop(run: Run, step: int, due: bool, requested: bool) -> bool:
    """Whether to stop after this step. With several processes all stop at the same step
    or none does; they agree at the steps that sync anyway (logging, checkpoints, the
    epoch's last), not at every step."""
    if run.ctx.world_size == 1:
        return requested
    if not (due or step % run.cfg.trainer.log_every_n_steps == 0 or step == len(run.train_loader)):
        return False
    return bool(all_reduce_sum(torch.tensor(int(requested), device=run.device)).item())


def stop_message(run: Run, signal_name: str, epoch: int, step: int) -> str:
    return (f"stopped by {signal_name or 'a signal'} at epoch {epoch + 1}, step {step}; checkpoint saved; "
            f"continue with: {resume_command(run.run_dir)}")



def save(run: Run, state: TrainState, name: str) -> None:
    """Save ``checkpoints/<name>`` (collective: every process hands in its state; the first writes)."""
    if state.sums is not None:  # mid-epoch: never checkpoint weights or sums a NaN has reached
        check_finite(run, state)
    training = state.state_dict()
    if run.ctx.is_main:
        save_checkpoint(run.checkpoint_path(name), {
            "cnnbench_version": cnnbench.__version__, "config": run.resolved, **training,
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(), "scaler": run.speed.scaler.state_dict(),
        })


def finish_epoch(run: Run, state: TrainState, writer) -> bool:
    """Evaluate, record and log the epoch; True if it is the best so far."""
    check_finite(run, state)
    train_metrics = state.sums.result()
    segment_seconds = time.perf_counter() - state.segment_start[0]
    segment_images = (state.step - state.segment_start[1]) * run.cfg.data.batch_size
    broadcast_buffers(run.model)  # BatchNorm statistics as the first process has them
    metrics = evaluate(run.model, run.val_loader, run.cfg.data.num_classes)
    seconds = time.perf_counter() - state.segment_start[0]
    record = {"epoch": state.epoch + 1, "train": train_metrics, "val": metrics, "lr": state.epoch_lr,
              "seconds": seconds, "train_seconds": segment_seconds}
    is_best = state.finish_epoch(record)
    run.schedule.end_epoch(metrics["top1"])
    log.info(
        f"epoch {record['epoch']}/{run.cfg.trainer.epochs}  train loss {train_metrics['loss']:.4f}  "
        f"val {format_metrics(metrics)}  ({seconds:.1f}s)"
    )
    # Throughput of the training pass alone (not evaluation, nor the part of an
    # epoch done before a resume).
    tensorboard.log_epoch(writer, record, segment_images / max(segment_seconds, 1e-9), run.model)
    return is_best


def save_epoch(run: Run, state: TrainState, is_best: bool) -> None:
    save(run, state, "best.pt" if is_best else "last.pt")
    if run.ctx.is_main:
        if is_best:
            copy_file(run.checkpoint_path("best.pt"), run.checkpoint_path("last.pt"))
        write_text(run.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state.history))


def check_finite(run: Run, state: TrainState) -> None:
    """Stop before weights or a loss that became NaN or infinite reach a checkpoint."""
    epoch = state.epoch
    total = all_reduce_sum(state.sums.loss.clone()).item()
    if not math.isfinite(total):
        raise diverged(total, epoch, state.step, run.cfg)
    if not bool(torch.stack([torch.isfinite(p).all() for p in run.model.parameters()]).all()):
        raise diverged(float("nan"), epoch, state.step, run.cfg, what="the weights")


def diverged(value: float, epoch: int, step: int, cfg: DictConfig, what: str = "the training loss") -> UserError:
    return UserError(
        f"{what} became {value} by step {step} of epoch {epoch + 1}; lower optim.lr "
        f"(now {cfg.optim.lr}) or set optim.clip_grad_norm; the last checkpoint is intact"
    )


def final_metrics(run: Run, state: TrainState) -> dict:
    """The last epoch's val metrics, with the multi-crop ones of eval.crops > 1 added."""
    metrics = state.metrics
    if run.views is None:
        return metrics
    multi_crop = evaluate(run.model, run.views, run.cfg.data.num_classes)
    crops = run.cfg.eval.crops
    log.info(f"val with {crops} crops: {format_metrics(multi_crop)}")
    return {**metrics, **{f"{k}_{crops}crop": v for k, v in multi_crop.items() if k != "samples"}}


def write_results(run: Run, state: TrainState, metrics: dict) -> dict:
    cfg = run.cfg
    skipped = sum(all_gather_object(len(run.train_loader.skipped) + len(run.val_loader.skipped)))
    if not run.ctx.is_main:
        barrier()
        return {"top1": metrics.get("top1")}
    results = {
        "model": cfg.model.name, "data": cfg.data.name, "epochs": state.epoch,
        **{k: metrics.get(k) for k in ("top1", "top5", "loss")},
        **{k: v for k, v in metrics.items() if "crop" in k},
        "best_top1": state.best_top1, "best_epoch": state.best_epoch,
        "params": count_parameters(run.model), "macs": run.macs, "unreadable_skipped": skipped,
        "wall_time_s": round(state.wall_time(), 2), "world_size": run.ctx.world_size,
        "batch_size": cfg.data.batch_size, "precision": run.speed.precision,
        "precision_reason": run.speed.reason, "channels_last": run.speed.channels_last, "resumed_from": state.resumed_from,
        **provenance(run.resolved, run.device),
        "checkpoint": str(run.checkpoint_path("last.pt")),
    }
    write_json(run.run_dir / "results.json", results)
    tensorboard.write_hparams(run.run_dir, hparams(cfg), results)
    log.info(
        f"done: {cfg.model.name} on {cfg.data.name}, {plural(cfg.trainer.epochs, 'epoch')}, val {format_metrics(metrics)} "
        f"(best top-1 {state.best_top1:.2f}% at epoch {state.best_epoch}) "
        f"in {results['wall_time_s']:.1f}s -> {run.run_dir}"
    )
    barrier()
    return results


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
