"""`cnnbench train`: one plain training loop, top to bottom.

build data, model, optimizer, schedule -> (resume) -> for each epoch:
train over shuffled batches, evaluate on the validation split, log, save
``last.pt`` (and ``best.pt``) -> write ``results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import cnnbench
from cnnbench.engine.checkpoint import load_checkpoint, load_weights, save_checkpoint, write_json, write_text
from cnnbench.engine.evaluate import evaluate, format_metrics
from cnnbench.engine.metrics import topk_correct
from cnnbench.engine.optim import base_lr, make_optimizer
from cnnbench.engine.schedule import make_schedule
from cnnbench.engine.runtime import loader_for, model_for, pick_device, seed_everything
from cnnbench.errors import UserError
from cnnbench.models import classification_loss, count_parameters, main_logits

log = logging.getLogger("cnnbench")


def train_command(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    model_file = hydra_cfg.runtime.choices.get("model")
    source = f"conf/model/{model_file}.yaml" if model_file else None
    results = train(cfg, Path(hydra_cfg.runtime.output_dir), source)
    return results["top1"]  # what a Hydra sweeper optimises


def train(cfg: DictConfig, run_dir: Path, model_source: Optional[str] = None) -> dict:
    check_trainer(cfg)
    started = time.perf_counter()
    device = pick_device(cfg.trainer.accelerator)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    seed_everything(cfg.seed)  # before the model is built: it draws the initial weights

    train_loader = loader_for(cfg, "train", device, train=True)
    val_loader = loader_for(cfg, "val", device, train=False)
    if len(train_loader) == 0:
        raise UserError(
            f"data.batch_size={cfg.data.batch_size} is larger than the training set "
            f"({len(train_loader.labels)} images); lower it"
        )
    model = model_for(cfg, model_source).to(device)
    optimizer = make_optimizer(cfg, model)
    schedule = make_schedule(cfg, optimizer, base_lr(cfg), len(train_loader))
    num_classes = cfg.data.num_classes
    resolved = OmegaConf.to_container(cfg, resolve=True)

    start_epoch, best, history = 0, {"top1": -1.0, "epoch": None}, []
    resumed_from = None
    if cfg.trainer.resume:
        state = load_checkpoint(resume_path(cfg.trainer.resume, run_dir, cfg))
        load_weights(model, state)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"]["torch"])
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
        resumed_from = state["path"]
        log.info(f"resumed from {resumed_from} after epoch {start_epoch}")

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    params = count_parameters(model)
    log.info(
        f"{cfg.model.name}: {params:,} parameters, input {tuple(model.input_shape)} | "
        f"{cfg.data.name}: {len(train_loader.labels)} train / {len(val_loader.labels)} val images | "
        f"device {device} | run folder {run_dir}"
    )
    writer = SummaryWriter(str(run_dir / "tb"))
    metrics: dict = history[-1]["val"] if history else {}
    try:
        for epoch in range(start_epoch, cfg.trainer.epochs):
            epoch_started = time.perf_counter()
            train_metrics = train_one_epoch(cfg, model, train_loader, optimizer, schedule, epoch, num_classes)
            metrics = evaluate(model, val_loader, num_classes)
            seconds = time.perf_counter() - epoch_started
            is_best = metrics["top1"] > best["top1"]
            if is_best:
                best = {"top1": metrics["top1"], "epoch": epoch + 1}
            history.append({"epoch": epoch + 1, "train": train_metrics, "val": metrics,
                            "lr": schedule.lr, "seconds": seconds})
            schedule.end_epoch(metrics["top1"])
            log.info(
                f"epoch {epoch + 1}/{cfg.trainer.epochs}  train loss {train_metrics['loss']:.4f}  "
                f"val {format_metrics(metrics)}  ({seconds:.1f}s)"
            )
            log_epoch(writer, history[-1], len(train_loader.labels))
            with open(run_dir / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(history[-1]) + "\n")
            state = {
                "format": 1, "cnnbench_version": cnnbench.__version__, "config": resolved,
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "rng": {"torch": torch.get_rng_state()},
                "best": best, "history": history, "metrics": metrics,
            }
            save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
            if is_best:
                save_checkpoint(run_dir / "checkpoints" / "best.pt", state)
    finally:
        writer.close()

    if cfg.eval.crops != 1:
        # The papers' final numbers: the last epoch's weights on multi-crop views.
        multi_crop = evaluate(model, loader_for(cfg, "val", device, train=False, crops=cfg.eval.crops), num_classes)
        log.info(f"val with {cfg.eval.crops} crops: {format_metrics(multi_crop)}")
        metrics = {**metrics, **{f"{k}_{cfg.eval.crops}crop": v for k, v in multi_crop.items() if k != "samples"}}
    skipped = sum(len(getattr(loader, "skipped", {})) for loader in (train_loader, val_loader))
    results = {
        "model": cfg.model.name, "data": cfg.data.name, "epochs": cfg.trainer.epochs,
        **{k: metrics.get(k) for k in ("top1", "top5", "loss")},
        **{k: v for k, v in metrics.items() if "crop" in k},
        "unreadable_skipped": skipped,
        "best_top1": best["top1"], "best_epoch": best["epoch"], "params": params,
        "wall_time_s": round(time.perf_counter() - started, 2), "device": str(device),
        "resumed_from": resumed_from,
        "versions": {"cnnbench": cnnbench.__version__, "torch": torch.__version__},
        "checkpoint": str(run_dir / "checkpoints" / "last.pt"),
    }
    write_json(run_dir / "results.json", results)
    writer_hparams(run_dir, cfg, results)
    log.info(
        f"done: {cfg.model.name} on {cfg.data.name}, {plural(cfg.trainer.epochs, 'epoch')}, val {format_metrics(metrics)} "
        f"(best top-1 {best['top1']:.2f}% at epoch {best['epoch']}) in {results['wall_time_s']:.1f}s -> {run_dir}"
    )
    return results


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def train_one_epoch(cfg, model, loader, optimizer, schedule, epoch: int, num_classes: int) -> dict:
    model.train()
    loader.set_epoch(epoch)
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.trainer.epochs}", leave=False,
               disable=None if cfg.trainer.progress_bar else True, dynamic_ncols=True)
    for step, (images, labels) in enumerate(bar):
        output = model(images)  # logits, or ModelOutput with auxiliary heads' logits in training mode
        loss = classification_loss(output, labels, cfg.regularization.label_smoothing)
        logits = main_logits(output)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
        optimizer.step()
        schedule.step()
        # Accumulate on the device; reading a value back every step would stall a GPU.
        loss_sum += loss.detach() * len(labels)
        correct += topk_correct(logits.detach(), labels, [1])[0]
        seen += len(labels)
        if step % 20 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_loss = loss_sum.item() / seen
    if not math.isfinite(train_loss):
        raise UserError(
            f"the training loss became {train_loss} in epoch {epoch + 1}; lower optim.lr "
            f"(now {cfg.optim.lr}); the checkpoints of earlier epochs are intact"
        )
    return {"loss": train_loss, "top1": 100.0 * correct.item() / seen}


def log_epoch(writer: SummaryWriter, record: dict, train_images: int) -> None:
    epoch = record["epoch"]
    writer.add_scalar("train/loss", record["train"]["loss"], epoch)
    writer.add_scalar("train/top1", record["train"]["top1"], epoch)
    for key in ("top1", "top5", "loss"):
        if key in record["val"]:
            writer.add_scalar(f"val/{key}", record["val"][key], epoch)
    writer.add_scalar("lr", record["lr"], epoch)
    writer.add_scalar("speed/epoch_seconds", record["seconds"], epoch)
    writer.add_scalar("speed/train_images_per_s", train_images / record["seconds"], epoch)


def writer_hparams(run_dir: Path, cfg: DictConfig, results: dict) -> None:
    """One HParams entry per run, so TensorBoard's HParams tab compares a sweep."""
    hparams = {
        "model": cfg.model.name, "data": cfg.data.name, "lr": cfg.optim.lr,
        "batch_size": cfg.data.batch_size, "epochs": cfg.trainer.epochs,
        "momentum": cfg.regularization.momentum, "weight_decay": cfg.regularization.weight_decay,
        "dropout": -1.0 if cfg.regularization.dropout is None else cfg.regularization.dropout,
        "lrn": cfg.regularization.lrn, "label_smoothing": cfg.regularization.label_smoothing,
        "schedule": cfg.schedule.name, "seed": cfg.seed,
    }
    final = {f"hparams/{k}": results[k] for k in ("top1", "top5", "best_top1") if results.get(k) is not None}
    with SummaryWriter(str(run_dir / "tb")) as writer:
        writer.add_hparams(hparams, final, run_name=".")


def check_trainer(cfg: DictConfig) -> None:
    if cfg.trainer.epochs < 1:
        raise UserError(f"trainer.epochs must be at least 1, got {cfg.trainer.epochs}")
    if cfg.trainer.devices != 1:
        raise UserError(
            f"trainer.devices={cfg.trainer.devices}: this version trains on one device; use trainer.devices=1"
        )
    if cfg.data.batch_size < 1:
        raise UserError(f"data.batch_size must be at least 1, got {cfg.data.batch_size}")


def resume_path(resume: str, run_dir: Path, cfg: DictConfig) -> Path:
    """`trainer.resume`: a checkpoint or run folder, or `auto`: the newest
    ``checkpoints/last.pt`` under ``./outputs`` of a run with the same model and data."""
    if resume != "auto":
        return Path(resume)
    suffix = f"_{cfg.model.name}_{cfg.data.name}"
    candidates = sorted(
        (p for p in Path("outputs").glob("**/checkpoints/last.pt")
         if run_dir.resolve() not in p.resolve().parents and (p.parent.parent.name.endswith(suffix)
                                                              or p.parent.parent.parent.name.endswith(suffix))),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        raise UserError(f"trainer.resume=auto found no checkpoints/last.pt of {cfg.model.name} on {cfg.data.name} under ./outputs")
    return candidates[-1]
