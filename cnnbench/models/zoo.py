"""The model zoo as a Markdown table: `python -m cnnbench.models.zoo`.

The README's "Models" table is this command's output. Each model is built
by :func:`cnnbench.create_model`: at its own input size (``input_size`` in
its file; 1x32x32 digits for the files that take the dataset's) with 1000
classes for ImageNet-size inputs and 10 for 32x32 ones, and summarised by
:func:`cnnbench.models.summary.summarize`.
"""

from __future__ import annotations

import sys
from typing import Iterable, List

import torch

from cnnbench.models.api import create_model, list_models, model_spec
from cnnbench.models.summary import scaled, summarize


def zoo_names() -> List[str]:
    return list_models()


def zoo_row(name: str) -> dict:
    model = create_model(name)
    spec = model_spec(name)
    rows = summarize(model, model.input_shape)
    return {
        "name": name,
        "input": "x".join(map(str, model.input_shape)),
        "classes": model.output_shape[0],
        "params": sum(r.params for r in rows),
        "macs": sum(r.macs for r in rows),
        "paper": short_reference(spec.get("paper") or ""),
        "published": published_accuracy(spec.get("published") or {}),
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
