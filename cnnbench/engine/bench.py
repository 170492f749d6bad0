"""`cnnbench bench`: how fast a model's step runs, measured the way the training loop runs it.

Random inputs of the model's input shape stay on the device; after
``warmup_steps`` the steps run in ``windows`` timed windows of ``steps``
steps, and the device is synchronised only at the ends of a window, so no
host sync per step hides in (or is left out of) the figure. The training
step is the loop's own (:func:`cnnbench.engine.train.train_step`: autocast,
channels-last, the gradient scaler, the optimizer and schedule), so the
figure is what ``cnnbench train`` gets per step, minus data loading.

Achieved FLOP/s counts 2 x MACs per image forward and 3 x that for a
training step (the backward pass costs about twice the forward), against a
peak: on a GPU from :data:`GPU_PEAK_TFLOPS`, on the CPU a matmul of the same
dtype timed in the same run.
"""

from __future__ import annotations

import copy
import resource
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from cnnbench.config import input_shape
from cnnbench.engine.device import pick_device
from cnnbench.engine.distributed import DistributedContext
from cnnbench.engine.optim import base_lr, make_optimizer
from cnnbench.engine.provenance import device_name
from cnnbench.engine.schedule import make_schedule
from cnnbench.engine.speed import Speed, speed_for
from cnnbench.engine.train import Run, train_step
from cnnbench.models import main_logits
from cnnbench.models.api import model_from_config
from cnnbench.models.summary import summarize

# Dense (no sparsity) tensor-core peaks in TFLOP/s from the vendors' data sheets:
# (bf16, fp16, tf32/fp32 as the fp32 path uses). Matched by substring of the device name.
GPU_PEAK_TFLOPS = {
    "H200": (989.0, 989.0, 494.0),
    "H100 SXM": (989.0, 989.0, 494.0),
    "H100 PCIe": (756.0, 756.0, 378.0),
    "H100": (756.0, 756.0, 378.0),
    "A100": (312.0, 312.0, 156.0),
    "L4": (121.0, 121.0, 60.0),
    "RTX 4090": (165.2, 165.2, 82.6),
    "RTX 3090": (71.0, 71.0, 35.6),
}


def benchmark(cfg: DictConfig) -> dict:
    """Time ``cfg``'s model under its trainer speed settings; with ``bench.baseline``
    also a bare fp32 eager loop on a copy of the same network, and their ratio."""
    device = pick_device(cfg.trainer.accelerator)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    torch.manual_seed(cfg.seed)
    speed = speed_for(cfg.trainer, device)
    model = model_from_config(cfg).to(device)
    macs = sum(row.macs for row in summarize(model, input_shape(cfg)))
    bare = copy.deepcopy(model) if cfg.bench.baseline else None
    images, labels = random_batch(cfg, device)
    step = ours(cfg, model, speed, images, labels)
    result = {"model": cfg.model.name, "mode": str(cfg.bench.mode), "batch_size": cfg.data.batch_size,
              "input": list(input_shape(cfg)), "device": device_name(device), "precision": speed.precision,
              "channels_last": speed.channels_last, "compile": bool(cfg.trainer.compile), "macs": macs,
              **time_windows(step, cfg.bench, device, cfg.data.batch_size)}
    flops_per_image = 2 * macs * (3 if cfg.bench.mode == "train" else 1)
    result["achieved_tflops"] = flops_per_image * result["images_per_s"] / 1e12
    result["peak_tflops"] = peak_tflops(device, speed)
    result["fraction_of_peak"] = result["achieved_tflops"] / result["peak_tflops"] if result["peak_tflops"] else None
    if bare is not None:
        baseline = time_windows(bare_step(cfg, bare, images, labels), cfg.bench, device, cfg.data.batch_size)
        result["baseline_images_per_s"] = baseline["images_per_s"]
        result["ratio_to_baseline"] = result["images_per_s"] / baseline["images_per_s"]
    return result


def random_batch(cfg: DictConfig, device: torch.device) -> tuple:
    generator = torch.Generator().manual_seed(cfg.seed)
    images = torch.randn(cfg.data.batch_size, *input_shape(cfg), generator=generator).to(device)
    labels = torch.randint(0, cfg.data.num_classes, (cfg.data.batch_size,), generator=generator).to(device)
    return images, labels


def ours(cfg: DictConfig, model: torch.nn.Module, speed: Speed, images, labels) -> Callable[[], None]:
    """One step as `cnnbench train` takes it (train), or the evaluation forward pass (infer)."""
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.trainer.compile else model
    if cfg.bench.mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.no_grad(), speed.autocast():
                main_logits(step_model(speed.to_input(images)))
        return infer
    optimizer = make_optimizer(cfg, model)
    schedule = make_schedule(cfg, optimizer, base_lr(cfg), steps_per_epoch=1_000_000)
    ctx = DistributedContext(device=images.device)
    run = Run(cfg, ctx, None, speed, None, None, None, model, step_model, optimizer, schedule, 0)
    model.train()
    return lambda: train_step(run, images, labels)


def bare_step(cfg: DictConfig, model: torch.nn.Module, images, labels) -> Callable[[], None]:
    """The baseline: a hand-written fp32 eager step (plain SGD with momentum) on the same network."""
    if cfg.bench.mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.no_grad():
                main_logits(model(images))
        return infer
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(main_logits(model(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_windows(step: Callable[[], None], options: DictConfig, device: torch.device, batch: int) -> dict:
    """Images/s per window (median, min, max), step time, and peak memory."""
    for _ in range(options.warmup_steps):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates: List[float] = []
    for _ in range(options.windows):
        started = time.perf_counter()
        for _ in range(options.steps):
            step()
        synchronize(device)
        rates.append(options.steps * batch / (time.perf_counter() - started))
    median = statistics.median(rates)
    return {"images_per_s": median, "images_per_s_min": min(rates), "images_per_s_max": max(rates),
            "step_ms": 1000.0 * batch / median, "peak_memory_mb": peak_memory_mb(device)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB: the process's peak


def peak_tflops(device: torch.device, speed: Speed) -> Optional[float]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        column = {"bf16": 0, "fp16": 1, "fp32": 2}[speed.precision]
        return next((peaks[column] for key, peaks in GPU_PEAK_TFLOPS.items() if key in name), None)
    return measured_matmul_tflops(speed.dtype or torch.float32)


def measured_matmul_tflops(dtype: torch.dtype, size: int = 1024, repeats: int = 10) -> float:
    """The CPU's practical peak for ``dtype``: the best of a few square matmuls."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # the first call picks kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e12


def format_result(result: Dict) -> str:
    lines = [
        f"{result['model']} {result['mode']}, batch {result['batch_size']} x {tuple(result['input'])}, "
        f"{result['device']}, {result['precision']}{', channels-last' if result['channels_last'] else ''}"
        f"{', compiled' if result['compile'] else ''}",
        f"  {result['images_per_s']:,.1f} images/s (median; {result['images_per_s_min']:,.1f}-"
        f"{result['images_per_s_max']:,.1f}), {result['step_ms']:.1f} ms/step, peak memory {result['peak_memory_mb']:,.0f} MB",
        f"  {result['achieved_tflops']:.3f} TFLOP/s achieved"
        + (f" of {result['peak_tflops']:.3f} peak ({100 * result['fraction_of_peak']:.1f}%)" if result["peak_tflops"] else ""),
    ]
    if "ratio_to_baseline" in result:
        lines.append(f"  bare fp32 eager loop: {result['baseline_images_per_s']:,.1f} images/s; "
                     f"ratio {result['ratio_to_baseline']:.2f}x")
    return "\n".join(lines)
