"""Config checks in one place: the schema's choices at compose time, validate()'s ranges and cross-key rules."""

from __future__ import annotations

import dataclasses
import json
import typing
from enum import Enum

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from cnnbench.cli import explain_config_error
from cnnbench.config import CONF_DIR, SCHEMAS, Choice, register_schemas
from cnnbench.engine import checkpoint
from cnnbench.engine.evaluate import evaluate_checkpoint
from cnnbench.errors import UserError
from cnnbench.validate import validate


def composed(command: str, *overrides: str):
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(command, overrides=list(overrides))


# --------------------------------------------------------------------------- defaults pass


def group_options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


# What an option cannot go without: data=folder has no default place (validate reads no folder).
REQUIRED = {"data=folder": ("data.root=/data/my-images",)}


@pytest.mark.parametrize("command", ["train", "summary"])
def test_the_default_config_of_each_command_passes(command):
    validate(composed(command), command)


def test_the_eval_commands_default_changes_to_a_default_run_pass():
    run_cfg = OmegaConf.create(OmegaConf.to_container(composed("train"), resolve=True))  # as a checkpoint holds it
    eval_cfg = composed("eval")
    run_cfg.eval.crops, run_cfg.eval.split = eval_cfg.eval.crops, eval_cfg.eval.split
    validate(run_cfg, "eval")


@pytest.mark.parametrize("override", [
    *(f"{group}={option}" for group in ("data", "optim", "schedule", "regularization", "trainer")
      for option in group_options(group)),
    *(f"experiment={option}" for option in group_options("experiment")),
])
def test_every_shipped_option_passes(override):
    validate(composed("train", override, *REQUIRED.get(override, ())))


@pytest.mark.parametrize("augment", group_options("augment"))
def test_every_augmentation_passes_on_imagenet_unless_it_pads(augment):
    cfg = composed("train", "data=imagenet", f"augment={augment}")
    if cfg.augment.crop_padding:  # cifar, shift: padded crops of in-memory images
        with pytest.raises(UserError, match="augment.crop_padding"):
            validate(cfg)
    else:
        validate(cfg)


# --------------------------------------------------------------------------- each rule, one bad value

IMAGENET = ("data=imagenet",)
SYNTHETIC = ("data=synthetic",)
FOLDER = ("data=folder", "data.root=/data/my-images")
FOLDER_32 = (*FOLDER, "data.image_size=32")

# (command, context the rule needs, the bad value, what the message must say)
CASES = [
    ("train", (), "seed=-1", "seed must be >= 0"),
    ("train", (), "trainer.epochs=0", "trainer.epochs"),
    ("train", (), "trainer.devices=0", "trainer.devices must be"),
    ("train", (), "trainer.devices=-2", "trainer.devices"),
    ("train", (), "trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
    ("train", (), "trainer.threads=0", "trainer.threads"),
    ("train", (), "trainer.checkpoint_every_n_steps=-1", "trainer.checkpoint_every_n_steps"),
    ("train", (), "trainer.dist_timeout_s=0", "trainer.dist_timeout_s"),
    ("train", (), "trainer.dist_timeout_s=inf", "trainer.dist_timeout_s"),
    ("train", ("trainer.accelerator=cpu",), "trainer.precision=fp16", "trainer.precision=fp16 needs a CUDA GPU"),
    ("train", (), "optim.lr=0", "optim.lr must be positive"),
    ("train", (), "optim.lr=nan", "optim.lr"),
    ("train", (), "optim.reference_batch_size=0", "optim.reference_batch_size"),
    ("train", (), "optim.clip_grad_norm=0", "optim.clip_grad_norm"),
    ("train", ("optim=adamw",), "optim.betas=[0.9]", "optim.betas"),
    ("train", ("optim=adamw",), "optim.betas=[0.9,1.0]", "optim.betas"),
    ("train", ("optim=adamw",), "optim.eps=0", "optim.eps"),
    ("train", (), "regularization.momentum=1.0", "regularization.momentum"),
    ("train", (), "regularization.weight_decay=-0.1", "regularization.weight_decay"),
    ("train", ("regularization.momentum=0",), "optim.nesterov=true", "optim.nesterov=true needs"),
    ("train", ("optim=adamw",), "optim.nesterov=true", "optim.nesterov=true needs"),
    ("train", (), "regularization.dropout=1.0", "regularization.dropout"),
    ("train", (), "regularization.label_smoothing=1.0", "regularization.label_smoothing"),
    ("train", ("schedule=step",), "schedule.step_size=0", "schedule.step_size"),
    ("train", ("schedule=multistep",), "schedule.milestones=[0,30]", "schedule.milestones"),
    ("train", ("schedule=multistep",), "schedule.milestones=[]", "schedule.milestones"),
    ("train", (), "schedule.warmup_epochs=-1", "schedule.warmup_epochs"),
    ("train", ("schedule=step",), "schedule.gamma=0", "schedule.gamma"),
    ("train", ("schedule=step",), "schedule.gamma=1.5", "schedule.gamma"),
    ("train", ("schedule=poly",), "schedule.power=0", "schedule.power"),
    ("train", (), "schedule.final_lr_fraction=1.5", "schedule.final_lr_fraction"),
    ("train", ("schedule=onecycle",), "schedule.peak_fraction=1.0", "schedule.peak_fraction"),
    ("train", ("schedule=plateau",), "schedule.patience=-1", "schedule.patience"),
    ("train", ("schedule=plateau",), "schedule.threshold=-1", "schedule.threshold"),
    ("train", (), "data.batch_size=0", "data.batch_size must be at least 1"),
    ("train", (), "data.eval_batch_size=0", "data.eval_batch_size"),
    ("train", IMAGENET, "data.workers=-1", "data.workers"),
    ("train", (), "data.num_classes=0", "data.num_classes"),
    ("train", (), "data.channels=0", "data.channels"),
    ("train", (), "data.image_size=0", "data.image_size"),
    ("train", (), "data.mean=[0.5,0.5]", "data.mean"),
    ("train", (), "data.std=[0.5,0.5]", "data.std"),
    ("train", (), "data.std=[0.0]", "data.std must all be positive"),
    ("train", SYNTHETIC, "data.train_size=0", "data.train_size"),
    ("train", SYNTHETIC, "data.val_size=null", "data.val_size"),
    ("train", (), "model.input_size=[32,32]", "model.input_size"),
    ("train", (), "model.norm_groups=0", "model.norm_groups"),
    ("train", IMAGENET, "model.input_size=[1,32,32]", "model.input_size"),
    ("train", IMAGENET, "model.input_size=[3,32,40]", "model.input_size"),
    ("train", (), "augment.crop_padding=-1", "augment.crop_padding"),
    ("train", ("data=imagenet", "augment=inception"), "augment.area=[0.0,1.0]", "augment.area"),
    ("train", ("data=imagenet", "augment=inception"), "augment.area=[0.5,1.5]", "augment.area"),
    ("train", ("data=imagenet", "augment=inception"), "augment.aspect=[2.0,1.0]", "augment.aspect"),
    ("train", IMAGENET, "augment.pca_lighting=-0.1", "augment.pca_lighting"),
    ("train", (), "augment=alexnet", "augment.crop=random"),
    ("train", (), "augment.crop=random_resized", "augment.crop=random_resized"),
    ("train", (), "augment.pca_lighting=0.1", "augment.pca_lighting=0.1"),
    ("train", IMAGENET, "augment=cifar", "augment.crop_padding=4"),
    ("train", IMAGENET, "augment.resize=200", "augment.resize=200 is smaller"),
    ("train", (), "eval.crops=10", "eval.crops=10 is not available (in-memory"),
    ("train", (), "eval.crops=3", "eval.crops=3 is not available; choose one of: 1, 2"),
    ("train", IMAGENET, "eval.crops=5", "choose one of: 1, 2, 10, 144"),
    ("train", IMAGENET, "eval.resize=200", "eval.resize=200 is smaller"),
    ("train", ("data=imagenet", "eval.crops=144"), "eval.scales=[256,200]", "eval.scales"),
    ("train", ("data=imagenet", "eval.crops=144"), "eval.scales=[]", "eval.scales"),
    # data=folder: a root, grey or RGB, what may stay null.
    ("train", FOLDER, "data.root=null", "set data.root=DIR"),
    ("train", FOLDER, "data.channels=2", "grey (1) or RGB (3)"),
    ("train", FOLDER, "model.input_size=[1,32,32]", "set data.channels to the model's channels"),
    ("train", (*FOLDER, "data.channels=1"), "augment.pca_lighting=0.1", "augment.pca_lighting=0.1 shifts RGB"),
    ("train", (), "data.num_classes=null", "data.num_classes is null"),
    ("train", (), "data.mean=null", "data.mean is null"),
    ("train", FOLDER, "data.num_classes=0", "data.num_classes must be at least 1"),
    ("summary", ("data=folder", "data.num_classes=10"), "data.num_classes=null", "this command reads no data"),
    # Training and evaluation views of folder data must show the same scale.
    ("train", (*FOLDER_32, "augment=none"), "eval.resize=32", "eval.resize=32 and augment.resize=256 disagree"),
    ("train", IMAGENET, "eval.resize=300", "set eval.resize=256 (or null, which follows augment.resize)"),
    ("train", FOLDER_32, "eval.resize=256", "set eval.resize to at most 113 (or null: 36"),
    ("summary", (), "summary.input_size=[3,32]", "summary.input_size"),
    ("summary", (), "summary.input_size=[3,0,32]", "summary.input_size"),
    ("summary", (), "model.input_size=[32,32]", "model.input_size"),
]


@pytest.mark.parametrize("command, context, bad, message", CASES, ids=[f"{c[2]}|{','.join(c[1])}" for c in CASES])
def test_each_rule_names_its_key(command, context, bad, message):
    validate(composed(command, *context), command)  # the context alone passes: the bad value is what fails
    with pytest.raises(UserError) as caught:
        validate(composed(command, *context, bad), command)
    text = str(caught.value)
    assert message in text, text
    assert "\n" not in text
    key = bad.split("=")[0]
    assert key in text, f"the message must name {key}: {text}"


def test_rules_that_do_not_concern_a_command_are_left_to_it():
    """`summary` reads no data and `eval` trains nothing: their rules leave those keys alone."""
    validate(composed("summary", "data=imagenet", "model.input_size=[1,32,32]", "optim.lr=0"), "summary")
    run_cfg = composed("train", "optim.lr=0", "trainer.epochs=0")
    validate(run_cfg, "eval")


def test_a_stored_plain_config_is_validated_like_a_composed_one():
    """A resumed run's and a checkpoint's config are plain (no schema): the same rules hold."""
    plain = OmegaConf.create(OmegaConf.to_container(composed("train", "data=imagenet"), resolve=True))
    validate(plain)
    plain.eval.crops = 144
    plain.eval.scales = [100]
    with pytest.raises(UserError, match="eval.scales"):
        validate(plain)
    plain = OmegaConf.create(OmegaConf.to_container(composed("train", "trainer=cpu"), resolve=True))
    plain.trainer.precision = "fp16"
    with pytest.raises(UserError, match="trainer.precision=fp16"):
        validate(plain)


# --------------------------------------------------------------------------- choices: the schema's enums


def enum_fields(schema, prefix: str = ""):
    """(key, enum) of every Choice-typed field of a schema, however deep."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        kind = hints[field.name]
        if isinstance(kind, type) and issubclass(kind, Enum):
            yield prefix + field.name, kind
        elif dataclasses.is_dataclass(kind):
            yield from enum_fields(kind, prefix + field.name + ".")


CHOICE_FIELDS = [(command, key, enum) for command, schema in SCHEMAS.items() for key, enum in enum_fields(schema)]


def test_the_closed_sets_are_enums():
    keys = {(command, key) for command, key, _ in CHOICE_FIELDS}
    for key in ("optim.name", "schedule.name", "trainer.precision", "trainer.accelerator", "augment.crop",
                "data.on_corrupt", "data.name", "model.norm", "eval.split"):
        assert ("train", key) in keys, key
    assert {("summary", "summary.format"), ("eval", "accelerator"), ("eval", "eval.split")} <= keys
    assert all(issubclass(enum, Choice) for _, _, enum in CHOICE_FIELDS)


@pytest.mark.parametrize("command, key, enum", CHOICE_FIELDS, ids=[f"{c}:{k}" for c, k, _ in CHOICE_FIELDS])
def test_every_choice_refuses_a_wrong_value_at_compose_time(command, key, enum):
    composed(command, f"{key}={enum.values()[-1]}")  # every choice is accepted by its own name
    with pytest.raises(ConfigCompositionException) as caught:
        composed(command, f"{key}=bogus")
    assert isinstance(caught.value.__cause__, ValidationError)
    message = explain_config_error(caught.value, command)
    assert message == f"{key} 'bogus' is unknown; choose one of: {', '.join(enum.values())}"


def test_choices_are_named_by_their_values():
    """OmegaConf accepts a member by its name and enum_to_str writes the name: both must be the value."""
    for _, _, enum in CHOICE_FIELDS:
        assert all(member.name == member.value for member in enum), enum


def test_choices_compare_print_and_store_as_plain_strings(tmp_path):
    cfg = composed("train", "trainer.precision=bf16", "optim=adamw")
    assert cfg.trainer.precision == "bf16" and f"{cfg.trainer.precision}" == "bf16" and str(cfg.optim.name) == "adamw"
    assert json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=True)))["trainer"]["precision"] == "bf16"
    stored = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # what a checkpoint must hold
    torch.save({"config": stored}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)["config"]  # how checkpoints are read
    assert type(loaded["trainer"]["precision"]) is str and loaded["trainer"]["precision"] == "bf16"
    assert loaded["model"]["norm"] == "bn" and loaded["data"]["name"] == "digits"
    assert "precision: bf16" in OmegaConf.to_yaml(stored)
    resumed = OmegaConf.create(loaded)
    assert resumed.run_name == "lenet5_digits"
    validate(resumed)


# --------------------------------------------------------------------------- before anything is written


def test_a_bad_value_stops_train_before_the_run_writes_anything(main_cli):
    cli = main_cli
    result = cli("train", "optim.lr=-0.1")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "optim.lr must be positive" in lines[0], result.stderr
    # Hydra makes the run folder with its own record (.hydra/) before the command
    # runs; nothing of the run's own may be there: no log, config, checkpoint, metrics.
    written = [p.relative_to(cli.cwd) for p in cli.cwd.rglob("*") if p.is_file()]
    assert all(".hydra" in p.parts for p in written), written


def test_a_wrong_choice_on_the_command_line_is_one_line(main_cli):
    cli = main_cli
    result = cli("train", "optim.name=sgdd")
    assert result.returncode == 2
    assert result.stderr.strip() == "cnnbench train: error: optim.name 'sgdd' is unknown; choose one of: sgd, adamw"
    assert not (cli.cwd / "outputs").exists()


def test_eval_validates_the_checkpoints_config_before_reading_data(tmp_path):
    run_cfg = OmegaConf.to_container(composed("train"), resolve=True, enum_to_str=True)
    # A checkpoint in the current format with no weights at all: validate must stop before they are needed.
    checkpoint.save_checkpoint(tmp_path / "last.pt", {"model": {}, "config": run_cfg})
    for override, message in (("eval.crops=10", "eval.crops=10 is not available"),
                              ("data.batch_size=0", "data.batch_size must be at least 1")):
        cfg = composed("eval", f"checkpoint={tmp_path / 'last.pt'}", override)
        with pytest.raises(UserError, match=message):
            evaluate_checkpoint(cfg, tmp_path / "out", [override.split("=")[0]] if override.startswith("eval.") else [])
        assert not (tmp_path / "out").exists()
