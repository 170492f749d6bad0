"""Speed switches: precision, channels-last; the defaults per device."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from cnnbench.config import TrainerConfig
from cnnbench.engine import speed as speed_module
from cnnbench.engine.speed import cpu_has_native_bf16, speed_for
from cnnbench.errors import UserError


def trainer(**values):
    cfg = OmegaConf.structured(TrainerConfig)
    for key, value in values.items():
        cfg[key] = value
    return cfg


def test_cpu_defaults_are_plain_fp32_without_hardware_bf16(monkeypatch):
    monkeypatch.setattr(speed_module, "cpu_has_native_bf16", lambda: False)
    speed = speed_for(trainer(), torch.device("cpu"))
    assert speed.precision == "fp32" and not speed.channels_last and not speed.scaler.is_enabled()
    assert "no bf16 in hardware" in speed.reason
    x = torch.zeros(2, 3, 4, 4)
    assert speed.to_input(x) is x


def test_cpu_defaults_are_bf16_and_channels_last_with_hardware_bf16(monkeypatch):
    monkeypatch.setattr(speed_module, "cpu_has_native_bf16", lambda: True)
    speed = speed_for(trainer(), torch.device("cpu"))
    assert speed.precision == "bf16" and speed.channels_last and not speed.scaler.is_enabled()
    assert "bf16 in hardware" in speed.reason
    # An explicit choice wins over the hardware's: fp32 keeps the default layout.
    explicit = speed_for(trainer(precision="fp32"), torch.device("cpu"))
    assert explicit.precision == "fp32" and not explicit.channels_last and explicit.reason == "set by trainer.precision"


def test_hardware_bf16_probe_agrees_with_the_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo here")
    flags = cpuinfo.read_text().split()
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_bf16_autocast_on_cpu():
    speed = speed_for(trainer(precision="bf16", channels_last=True), torch.device("cpu"))
    layer = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    with speed.autocast():
        out = layer(speed.to_input(torch.randn(2, 3, 8, 8)))
    assert out.dtype == torch.bfloat16
    assert speed.to_input(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)


def test_fp16_on_the_cpu_is_refused():
    # With trainer.accelerator=auto only the device says there is no GPU, so speed_for checks it.
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        speed_for(trainer(precision="fp16"), torch.device("cpu"))


def test_unknown_precision_is_refused_by_the_schema():
    with pytest.raises(ValidationError, match="'fp8'"):
        trainer(precision="fp8")


@pytest.mark.slow
def test_mixed_precision_training_run(run):
    result = run("train", "trainer.epochs=1", "trainer.accelerator=cpu", "trainer.precision=bf16",
                 "trainer.channels_last=true", "hydra.run.dir=run")
    assert "cpu, bf16, channels-last" in result.stdout
    results = json.loads((run.cwd / "run" / "results.json").read_text())
    assert results["precision"] == "bf16" and 0 <= results["top1"] <= 100
