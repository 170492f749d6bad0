"""The model zoo as a Markdown table: `python -m cnnbench.models.zoo`.

The README's "Models" table is this command's output. Each model is built
at its own input size (``input_size`` in its file; 1x32x32 digits for the
files that take the dataset's) with 1000 classes for ImageNet-size inputs
and 10 for 32x32 ones, and summarised by :func:`cnnbench.models.summary.summarize`.
"""

from __future__ import annotations

import sys
from typing import Iterable, List

import torch
from omegaconf import OmegaConf

from cnnbench.config import CONF_DIR
from cnnbench.models.builder import build_model
from cnnbench.models.summary import scaled, summarize

DEFAULT_INPUT = (1, 32, 32)  # the default dataset's (digits) shape, for files without input_size


def zoo_names() -> List[str]:
    return sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))


def zoo_row(name: str) -> dict:
    spec = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    shape = tuple(spec.get("input_size") or DEFAULT_INPUT)
    classes = 1000 if shape[-1] >= 128 else 10
    resolved = OmegaConf.to_container(OmegaConf.merge({"data": {"num_classes": classes}}, {"model": spec}).model, resolve=True)
    rows = summarize(build_model(resolved, shape, source=f"conf/model/{name}.yaml"), shape)
    published = resolved.get("published") or {}
    return {
        "name": name,
        "input": "x".join(map(str, shape)),
        "classes": classes,
        "params": sum(r.params for r in rows),
        "macs": sum(r.macs for r in rows),
        "paper": short_reference(resolved.get("paper") or ""),
        "published": published_accuracy(published),
    }


def short_reference(paper: str) -> str:
    """'Lin, Chen, Yan. Network In Network. ICLR 2014' -> 'Lin et al., ICLR 2014'."""
    parts = [p.strip() for p in paper.split(". ") if p.strip()]
    if not parts:
        return ""
    authors = parts[0].split(",")
    first = authors[0].replace(" et al", "").split()[-1]
    who = first + (" et al." if len(authors) > 1 or " et al" in parts[0] else "")
    return f"{who}, {parts[-1]}" if len(parts) > 1 else who


def published_accuracy(published: dict) -> str:
    if "top1" in published:
        return f"{published['top1']:.1f}% top-1"
    if "top1_error" in published:
        return f"{100 - published['top1_error']:.1f}% top-1"
    if "top5_error" in published:
        return f"{100 - published['top5_error']:.1f}% top-5"
    return ""


def markdown(rows: Iterable[dict]) -> str:
    lines = [
        "| model | input | classes | params | MACs | paper | published |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | {r['input']} | {r['classes']} | {r['params']:,} | {scaled(r['macs'])} | "
            f"{r['paper']} | {r['published']} |"
        )
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    torch.set_grad_enabled(False)
    names = argv or zoo_names()
    print(markdown(zoo_row(name) for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
