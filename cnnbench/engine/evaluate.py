"""Top-1/top-5 of a model on a dataset split (multi-crop batches scored by their mean
softmax), and the evaluation of a saved checkpoint."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterable, Sequence, Tuple

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from cnnbench.data.pipeline import loader_for
from cnnbench.engine.checkpoint import load_checkpoint, load_weights, write_json
from cnnbench.engine.device import pick_device
from cnnbench.engine.distributed import all_reduce_sum
from cnnbench.engine.metrics import reported_ks, topk_hits
from cnnbench.errors import UserError
from cnnbench.models import main_logits
from cnnbench.models.api import model_from_config
from cnnbench.validate import validate

log = logging.getLogger("cnnbench")


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]], num_classes: int,
    per_class: bool = False,
) -> dict:
    """Mean loss and top-k accuracy (in %) over every sample the batches hold, each once;
    with ``per_class``, also each class's top-1 (``per_class_top1``, None for a class with no samples).

    With several processes, each evaluates its own part of the split and the
    sums are added up over all of them, so the numbers are the whole split's.
    """
    was_training = model.training
    model.eval()
    ks = reported_ks(num_classes)
    device = next(model.parameters(), torch.zeros(())).device
    correct = torch.zeros(len(ks), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.long, device=device)
    class_total = torch.zeros(num_classes, dtype=torch.long, device=device)
    class_hits = torch.zeros(num_classes, dtype=torch.long, device=device)
    for images, labels in batches:
        if images.ndim == 5:  # (N, views, C, H, W): multi-crop, scored by the views' mean softmax
            logits = mean_softmax_log_probs(model, images)
        else:
            logits = main_logits(model(images))  # the main classifier only, never auxiliary heads
        hits = topk_hits(logits, labels, ks)
        correct += hits.sum(dim=1)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        count += len(labels)
        if per_class:
            class_total += torch.bincount(labels, minlength=num_classes)
            class_hits += torch.bincount(labels[hits[0]], minlength=num_classes)
    model.train(was_training)
    for total in (correct, loss_sum, count, class_total, class_hits):
        all_reduce_sum(total)
    samples = count.item()
    if samples == 0:
        raise UserError("the evaluation split is empty")
    result = {f"top{k}": 100.0 * c / samples for k, c in zip(ks, correct.tolist())}
    result["loss"] = loss_sum.item() / samples
    result["samples"] = samples
    if per_class:
        result["per_class_top1"] = [None if n == 0 else 100.0 * h / n for h, n in zip(class_hits.tolist(), class_total.tolist())]
    return result


def mean_softmax_log_probs(model: torch.nn.Module, views: torch.Tensor) -> torch.Tensor:
    """log of the softmax averaged over each sample's views: (N, V, C, H, W) -> (N, classes).

    Ranking these gives the top-k of the averaged softmax, and cross-entropy on
    them is the negative log of its probability for the true class.
    """
    n, v = views.shape[:2]
    log_probs = main_logits(model(views.flatten(0, 1))).float().log_softmax(dim=1)
    return log_probs.view(n, v, -1).logsumexp(dim=1) - math.log(v)



def format_metrics(metrics: dict) -> str:
    parts = [f"top-{k[3:]} {metrics[k]:.2f}%" for k in ("top1", "top5") if k in metrics]
    return "  ".join(parts + [f"loss {metrics['loss']:.4f}"])


def evaluate_checkpoint(cfg: DictConfig, out_dir: Path, eval_overrides: Sequence[str] = ()) -> dict:
    """`cnnbench eval`: a checkpoint's top-1/top-5 on its own dataset, written to ``out_dir/results.json``.

    The run's own config rebuilds the model and data; ``cfg`` (the eval
    command's config) may move the data (``data.root``), change the batch
    size, the split and ``eval.crops``; ``eval_overrides`` are the
    ``eval.*`` keys its command line set, which replace the run's.
    """
    if cfg.checkpoint and cfg.run:
        raise UserError("give checkpoint=PATH or run=RUN_FOLDER, not both")
    if not (cfg.checkpoint or cfg.run):
        raise UserError("say which checkpoint to evaluate: cnnbench eval checkpoint=PATH (a .pt file) or run=RUN_FOLDER")
    state = load_checkpoint(Path(cfg.checkpoint or cfg.run))
    run_cfg = OmegaConf.create(state["config"])
    for key in ("root", "batch_size", "on_corrupt", "workers", "gpu_decode"):
        if cfg.data[key] is not None:
            run_cfg.data[key] = cfg.data[key]
    if cfg.data.batch_size is not None:
        run_cfg.data.eval_batch_size = cfg.data.batch_size
    # The run's own eval.resize/scales (what it reported with), this command's crops
    # and split, and whatever else of eval.* this command line sets.
    run_cfg.eval.crops, run_cfg.eval.split = cfg.eval.crops, cfg.eval.split
    for key in eval_overrides:
        OmegaConf.update(run_cfg, key, OmegaConf.select(cfg, key), force_add=True)
    validate(run_cfg, "eval")  # the run's config with this command's changes, before any data or model
    device = pick_device(cfg.accelerator)
    model = model_from_config(run_cfg, load_pretrained=False).to(device)  # the checkpoint holds the weights
    load_weights(model, state)
    loader = loader_for(run_cfg, cfg.eval.split, device, train=False, crops=cfg.eval.crops)
    metrics = evaluate(model, loader, run_cfg.data.num_classes, per_class=True)
    log.info(
        f"{run_cfg.model.name} on {run_cfg.data.name} {cfg.eval.split} ({metrics['samples']} images, "
        f"{cfg.eval.crops} crop(s), epoch {state.get('epoch')}): {format_metrics(metrics)}"
    )
    results = {"checkpoint": state["path"], "model": run_cfg.model.name, "data": run_cfg.data.name,
               "split": cfg.eval.split, "crops": cfg.eval.crops, "epoch": state.get("epoch"), **metrics,
               "unreadable_skipped": len(loader.skipped)}
    write_json(out_dir / "results.json", results)
    return results
