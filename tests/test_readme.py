"""The README says what the tool does: its set-up commands and its Models table."""

import re

import pytest

from cnnbench.models.zoo import markdown, zoo_names, zoo_row
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def table_rows():
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \| \d+x\d+x\d+ .*$", README, re.M)}


def test_readme_starts_with_the_two_setup_commands():
    block = README.split("```")[1].strip().splitlines()
    assert block[0] == "bash"
    assert block[1].endswith("pip install -e . && cnnbench train")
    assert block[2].endswith('pip install -e ".[dev]" && pytest')
    assert len(block) == 3


def test_every_zoo_model_is_in_the_models_table():
    assert sorted(table_rows()) == zoo_names()


@pytest.mark.parametrize("name", [n for n in zoo_names() if n.startswith(("lenet", "nin_cifar", "resnet20", "resnet56", "alexnet_cifar"))])
def test_models_table_rows_are_the_tools_output(name):
    """Rebuilt here for the small models; `python -m cnnbench.models.zoo` regenerates the table."""
    assert table_rows()[name] == markdown([zoo_row(name)]).splitlines()[-1]
