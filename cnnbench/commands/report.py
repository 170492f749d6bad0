"""`cnnbench report PATH...`: reads the runs under PATH and writes one report next to them."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import List

from omegaconf import DictConfig

from cnnbench.errors import UserError
from cnnbench.report.build import build_report, write_report
from cnnbench.report.tables import render

log = logging.getLogger("cnnbench")

# Hydra flags followed by a value that is not a folder (`--cfg job`, `-cn report`).
VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cn", "--config-name", "-cp", "--config-path",
               "-cd", "--config-dir", "-i", "--info", "--experimental-rerun"}
BASELINE = "report.baseline="


def quote(text: str) -> str:
    """A Hydra quoted string: a quote is escaped, and so are the backslashes before a quote or the end."""
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text) + "'"


def paths_as_override(args: List[str]) -> List[str]:
    """Bare arguments (no `=`, not a flag or a flag's value) become one report.paths=[...] override;
    report.baseline=KEY=VALUE is quoted, as Hydra reads one `=` per override."""
    kept, paths = [], []
    for i, arg in enumerate(args):
        after_flag = i > 0 and args[i - 1] in VALUE_FLAGS
        if arg.startswith(BASELINE) and "=" in arg[len(BASELINE):] and arg[len(BASELINE):][:1] not in "'\"":
            arg = BASELINE + quote(arg[len(BASELINE):])
        (paths if "=" not in arg and not arg.startswith("-") and not after_flag else kept).append(arg)
    if not paths:
        return kept
    return [*kept, f"report.paths=[{','.join(quote(p) for p in paths)}]"]


def report_command(cfg: DictConfig) -> None:
    options = cfg.report
    if not options.paths:
        raise UserError("name the sweep or run folders to report on: cnnbench report PATH... (or report.paths=[...])")
    paths = [Path(p) for p in options.paths]
    report = build_report(paths, baseline=options.baseline, ignore=list(options.ignore))
    out = Path(options.out) if options.out else paths[0]
    written = write_report(report, out)
    print(render(report, str(options.format)), end="")
    if options.format == "table":  # json and csv stay parseable: nothing else on stdout
        log.info("wrote " + ", ".join(str(p) for p in written))
