"""Checkpoints are read safely: no code runs from a file, a damaged one is caught, anything else is one line."""

import random

import numpy as np
import pytest
import torch

from cnnbench.engine.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from cnnbench.errors import UserError


def checkpoint_like(weights: torch.Tensor) -> dict:
    return {"config": {"model": {"name": "x"}}, "model": {"fc.weight": weights}, "ranks": [{"rng": rng_state()}]}


class RunsCode:
    """What a crafted checkpoint holds: unpickling it calls a function of the attacker's choosing."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": {}, "payload": RunsCode(marker)}, path)
    with pytest.raises(UserError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_flipped_byte_in_the_weights_is_caught(tmp_path):
    path = tmp_path / "last.pt"
    weights = torch.arange(4096, dtype=torch.float32) + 0.5  # a byte pattern easy to find in the file
    save_checkpoint(path, checkpoint_like(weights))
    assert torch.equal(load_checkpoint(path)["model"]["fc.weight"], weights)
    data = bytearray(path.read_bytes())
    at = data.find(weights[1000:1004].numpy().tobytes())
    assert at > 0
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", bytes(range(256)) * 4])
def test_other_files_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "file.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a cnnbench checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_of_another_format_says_so(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": 2, "config": {}, "model": {}}, path)
    with pytest.raises(UserError, match="another version of cnnbench .format 2"):
        load_checkpoint(path)


def test_random_streams_survive_a_safe_round_trip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = tmp_path / "rng.pt"
    save_checkpoint(path, checkpoint_like(torch.zeros(2)))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(load_checkpoint(path)["ranks"][0]["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
