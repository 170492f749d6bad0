"""The training step under each CPU speed setting, against a bare fp32 eager loop in the same run.

For each model, `cnnbench bench` (the loop's own step: autocast, channels-last,
the gradient scaler, optimizer and schedule) runs under each setting with
``bench.baseline=true``, which also times a hand-written fp32 eager loop on the
same network; the printed ratio is ours / bare, so machines of different speed
and load compare.

    python benchmarks/train_step.py                          # resnet20 nin_cifar lenet5 alexnet_cifar
    python benchmarks/train_step.py --models resnet20 --threads 2
"""

from __future__ import annotations

import argparse

from hydra import compose, initialize_config_dir

from cnnbench.config import CONF_DIR, register_schemas
from cnnbench.engine.bench import benchmark
from cnnbench.engine.speed import cpu_has_native_bf16

SETTINGS = {
    "fp32": ["trainer.precision=fp32", "trainer.channels_last=false"],
    "bf16": ["trainer.precision=bf16", "trainer.channels_last=false"],
    "bf16 + channels-last": ["trainer.precision=bf16", "trainer.channels_last=true"],
    "auto (the default)": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet20", "nin_cifar", "lenet5", "alexnet_cifar"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window (3 windows)")
    args = parser.parse_args()
    register_schemas()
    print(f"CPU has bf16 in hardware: {cpu_has_native_bf16()}; threads {args.threads}; batch {args.batch_size}")
    print("| model | setting | images/s | bare fp32 loop | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for model in args.models:
            for name, overrides in SETTINGS.items():
                cfg = compose(config_name="bench", overrides=[
                    f"model={model}", f"data.batch_size={args.batch_size}", "trainer.accelerator=cpu",
                    f"trainer.threads={args.threads}", "bench.baseline=true", "bench.warmup_steps=2",
                    "bench.windows=3", f"bench.steps={args.steps}", *overrides])
                result = benchmark(cfg)
                print(f"| {model} | {name} | {result['images_per_s']:,.1f} | "
                      f"{result['baseline_images_per_s']:,.1f} | {result['ratio_to_baseline']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
