"""model.pretrained=torchvision: torchvision's ImageNet weights from torch hub's cache, never downloaded.

The "weights" here are torchvision networks built with random weights and
saved under the file name of their DEFAULT weights' URL in a temporary hub
folder (``torch.hub.get_dir`` patched), so the tests need no internet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from cnnbench import create_model
from cnnbench.errors import UserError
from cnnbench.models.pretrained import weights_location


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A torch hub folder in tmp_path; ``hub(name, model)`` saves ``model``'s state dict where
    torchvision's ``name`` weights go and returns the path."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def save(name: str, model: torch.nn.Module) -> Path:
        path, _ = weights_location(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        return path

    return save


def random_input(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def same_logits(ours: torch.nn.Module, theirs: torch.nn.Module, size: int) -> None:
    ours.eval()
    theirs.eval()
    x = random_input(size)
    with torch.no_grad():
        got, want = ours(x), theirs(x)
    # Untrained BN statistics let logits grow to ~1e7 (Inception-v3), where float32 rounding of
    # folded weights is visible in absolute terms: the tolerance scales with the logits.
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, atol=1e-5 * max(scale, 1.0), rtol=1e-5)


def test_resnet18_gets_torchvisions_weights(hub, tmp_path):
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(weights=None)
    path = hub("resnet18", theirs)
    assert path == tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    same_logits(create_model("resnet18", pretrained="torchvision"), theirs, 64)


def test_inception_v3_drops_the_aux_head_and_folds_the_input_transform(hub):
    # torchvision's Inception-v3 weights come with the auxiliary head and transform_input=True.
    torch.manual_seed(0)
    theirs = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    hub("inception_v3", theirs)
    same_logits(create_model("inception_v3", pretrained="torchvision"), theirs, 80)


def test_googlenet_weights_with_their_aux_heads_load(hub):
    theirs = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    hub("googlenet", theirs)
    ours = create_model("googlenet_bn", pretrained="torchvision")
    *_, fc_weight, fc_bias = ours.state_dict().values()
    assert torch.equal(fc_weight, theirs.fc.weight) and torch.equal(fc_bias, theirs.fc.bias)


def test_a_missing_file_is_one_line_naming_it_and_the_url(hub, tmp_path):
    with pytest.raises(UserError) as err:
        create_model("resnet18", pretrained="torchvision")
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message


def test_a_model_without_torchvision_source_is_refused_naming_those_with_one(hub):
    with pytest.raises(UserError, match=r"'alexnet' is not a torchvision network.*alexnet_owt.*resnet50") as err:
        create_model("alexnet", pretrained="torchvision")
    assert "\n" not in str(err.value)


def test_other_than_1000_classes_is_refused(hub):
    with pytest.raises(UserError, match=r"1000 ImageNet classes, but num_classes=10") as err:
        create_model("resnet18", num_classes=10, pretrained="torchvision")
    assert "\n" not in str(err.value)


def test_an_unknown_choice_is_refused():
    with pytest.raises(UserError, match="expected one of \\[torchvision\\]"):
        create_model("resnet18", pretrained="imagenet")


def test_train_from_torchvision_weights_then_eval(hub, run):
    from tests.test_validate import composed

    from cnnbench.models.api import model_from_config

    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(weights=None)
    hub("resnet18", theirs)
    data = ["data=synthetic", "data.num_classes=1000", "data.train_size=32", "data.val_size=16", "data.batch_size=16"]
    cfg = composed("train", "model=resnet18", "model.pretrained=torchvision", "model.input_size=[3,32,32]", *data)
    same_logits(model_from_config(cfg), theirs, 32)
    with pytest.raises(UserError, match="data.num_classes=10"):
        model_from_config(composed("train", "model=resnet18", "model.pretrained=torchvision", "data=synthetic"))

    trained = run("train", "model=resnet18", "model.pretrained=torchvision", "model.input_size=[3,32,32]", *data,
                  "trainer.epochs=1", "trainer.progress_bar=false", "trainer.accelerator=cpu")
    evaluated = run("eval", f"run={trained.run_dir}", "accelerator=cpu")
    assert evaluated.results["samples"] == 16 and evaluated.results["model"] == "resnet18"
