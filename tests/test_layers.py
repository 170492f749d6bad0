"""The layers point one way, checked on the source (``ast``, so an import inside a function counts):

- ``cnnbench.models`` and ``cnnbench.data`` import neither ``cnnbench.engine`` nor ``cnnbench.commands``;
- ``cnnbench.engine`` does not import ``cnnbench.commands``;
- only ``cnnbench.commands`` reads Hydra's run state (``hydra.core.hydra_config``, ``HydraConfig``);

and no function in ``cnnbench/`` is longer than 60 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "cnnbench"
MAX_FUNCTION_LINES = 60
# (layer, what it may not import)
FORBIDDEN = [
    ("cnnbench.models", ("cnnbench.engine", "cnnbench.commands")),
    ("cnnbench.data", ("cnnbench.engine", "cnnbench.commands")),
    ("cnnbench.engine", ("cnnbench.commands",)),
]
HYDRA_STATE = "hydra.core.hydra_config"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> List[Tuple[str, Path]]:
    return sorted((module_name(path), path) for path in PACKAGE.rglob("*.py"))


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported(source: str, module: str, package: bool = False) -> Iterator[Tuple[int, str]]:
    """(line, dotted name) of everything ``source`` (the module named ``module``) imports, anywhere
    in the file: ``import a.b``, ``from a import b`` (as ``a`` and ``a.b``), relative imports,
    and ``importlib.import_module("a.b")`` / ``__import__("a.b")`` with a literal name."""
    here = module.split(".") if package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                base = ".".join(parent + ([node.module] if node.module else []))
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(source: str, module: str, package: bool = False) -> List[str]:
    found = {}
    for layer, banned in FORBIDDEN:
        if within(module, layer):
            for line, name in imported(source, module, package):
                hits = [prefix for prefix in banned if within(name, prefix)]
                if hits:
                    found.setdefault(line, f"{module}:{line} imports {name} ({layer} may not import {hits[0]})")
    return list(found.values())


def hydra_state_violations(source: str, module: str, package: bool = False) -> List[str]:
    if within(module, "cnnbench.commands"):
        return []
    found = {}
    for line, name in imported(source, module, package):
        if within(name, HYDRA_STATE):
            found.setdefault(line, f"{module}:{line} imports {name}")
    for node in ast.walk(ast.parse(source)):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name == "HydraConfig":
            found.setdefault(node.lineno, f"{module}:{node.lineno} uses HydraConfig")
    return list(found.values())


def long_functions(source: str, module: str, limit: int = MAX_FUNCTION_LINES) -> List[str]:
    return [f"{module}:{node.lineno} {node.name}() is {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]


# --- the checks on cnnbench/ ---------------------------------------------------------------------


def test_the_package_is_found():
    names = [name for name, _ in modules()]
    for expected in ("cnnbench.models", "cnnbench.data", "cnnbench.engine.train", "cnnbench.commands.train"):
        assert expected in names


def test_models_and_data_do_not_import_engine_or_commands_and_engine_not_commands():
    found = [v for name, path in modules() for v in layer_violations(path.read_text(), name, is_package(path))]
    assert not found, "\n".join(found)


def test_only_commands_read_hydras_run_state():
    found = [v for name, path in modules() for v in hydra_state_violations(path.read_text(), name, is_package(path))]
    assert not found, "\n".join(found)


def test_no_function_is_longer_than_60_lines():
    found = [v for name, path in modules() for v in long_functions(path.read_text(), name)]
    assert not found, "\n".join(found)


# --- the checkers find what they look for ---------------------------------------------------------


@pytest.mark.parametrize("module, source", [
    ("cnnbench.models.zoo", "import cnnbench.engine.train\n"),
    ("cnnbench.models.zoo", "from cnnbench.engine.build import model_for\n"),
    ("cnnbench.models.zoo", "from cnnbench import engine\n"),
    ("cnnbench.models.zoo", "from ..engine import build\n"),
    ("cnnbench.models.zoo", "from .. import commands\n"),
    ("cnnbench.data.cifar", "def load():\n    from cnnbench.commands.train import train_command\n"),
    ("cnnbench.data.cifar", "import importlib\nimportlib.import_module('cnnbench.engine.device')\n"),
    ("cnnbench.data", "from ..engine import device\n"),  # as cnnbench/data/__init__.py
    ("cnnbench.engine.train", "class A:\n    def f(self):\n        import cnnbench.commands.resume as r\n"),
])
def test_a_layer_violation_is_found(module, source):
    assert layer_violations(source, module, package=module == "cnnbench.data")


@pytest.mark.parametrize("module, source", [
    ("cnnbench.engine.train", "import cnnbench.data.loaders\nfrom cnnbench.models import Network\n"),
    ("cnnbench.commands.train", "from cnnbench.engine.train import train\n"),
    ("cnnbench.models.zoo", "from .builder import build_model\nimport cnnbench.engineering\n"),
    ("cnnbench.data", "from .engine import x\n"),  # cnnbench.data.engine, not cnnbench.engine
])
def test_allowed_imports_are_not_flagged(module, source):
    assert not layer_violations(source, module, package=module == "cnnbench.data")


@pytest.mark.parametrize("source", [
    "from hydra.core.hydra_config import HydraConfig\n",
    "def f():\n    import hydra.core.hydra_config\n",
    "from hydra.core import hydra_config\n",
    "import hydra\ndef f():\n    return hydra.core.hydra_config.HydraConfig.get()\n",
])
def test_hydra_state_outside_commands_is_found(source):
    assert hydra_state_violations(source, "cnnbench.engine.train")
    assert not hydra_state_violations(source, "cnnbench.commands.train")


def test_long_functions_are_found():
    def function(lines: int) -> str:
        return "def f():\n" + "    x = 1\n" * (lines - 1)

    assert not long_functions(function(60), "m")
    assert long_functions(function(61), "m") == ["m:1 f() is 61 lines"]
    nested = "class A:\n    async def g(self):\n" + "        x = 1\n" * 61
    assert long_functions(nested, "m") == ["m:2 g() is 62 lines"]
