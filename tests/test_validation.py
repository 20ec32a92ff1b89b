"""Every setting is validated before anything is written: Literal fields against the values of
their type (read from config.py's type hints, the one place they are listed), shapes against the
data, and option combinations that cannot be honoured."""

from typing import Literal, get_args, get_origin, get_type_hints

import pytest

from ldm_course import config
from ldm_course.cli.main import main
from ldm_course.infra import precision
from ldm_course.infra.limits import check_config, literal_choices

# each config class, the training config it is set through and the prefix of its --set names
CONFIGS = (
    (config.VAETrainConfig, config.VAETrainConfig, ""),
    (config.LDMTrainConfig, config.LDMTrainConfig, ""),
    (config.VAEConfig, config.VAETrainConfig, "vae."),
    (config.UNetConfig, config.LDMTrainConfig, "unet."),
)


def literal_fields():
    """(training config class, --set name, allowed values) for every Literal field of the configs."""
    out = []
    for cls, train_cls, prefix in CONFIGS:
        for name, hint in get_type_hints(cls).items():
            if get_origin(hint) is Literal:
                out.append((train_cls, prefix + name, get_args(hint)))
    return out


def test_there_are_literal_fields_and_their_choices_come_from_the_type_hints():
    found = {(cls.__name__, name) for cls, name, _ in literal_fields()}
    assert {("VAETrainConfig", "recon"), ("LDMTrainConfig", "schedule")} <= found
    assert ("VAETrainConfig", "precision") in found
    assert literal_choices(config.VAETrainConfig, "recon") == ("l1", "l2")
    assert literal_choices(config.VAETrainConfig, "steps") is None
    assert precision.PRECISIONS == get_args(precision.Precision)
    assert config.PRESETS == get_args(config.Preset)


@pytest.mark.parametrize(
    "cls, name, allowed", literal_fields(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_literal_field_is_checked_where_parsed(cls, name, allowed):
    preset = config.vae_preset if cls is config.VAETrainConfig else config.ldm_preset
    with pytest.raises(ValueError) as err:
        config.override(preset("cpu-fast"), [f"{name}=nonsense"])
    message = str(err.value)
    assert f"{name}='nonsense'" in message and "choose one of" in message
    assert all(str(v) in message for v in allowed)
    for value in allowed:  # and every allowed value is accepted
        cfg = config.override(preset("cpu-fast"), [f"{name}={value}"])
        for part in name.split("."):
            cfg = getattr(cfg, part)
        assert cfg == value


def test_a_literal_field_set_in_python_is_checked_with_the_config():
    from dataclasses import replace

    with pytest.raises(ValueError, match="schedule='cosin': choose one of linear"):
        check_config(replace(config.ldm_preset("cpu-fast"), schedule="cosin"))
    from ldm_course.infra import limits

    assert not hasattr(limits, "CHOICES")  # no second list of the allowed names


@pytest.mark.parametrize(
    "command, setting",
    [("train-vae", "recon=l3"), ("train-ldm", "schedule=cosin"), ("train-vae", "perceptual_net=x")]
    + [("train-ldm", "sample_by=groups"), ("train-ldm", "labels=cat")],
)
def test_a_bad_choice_is_refused_before_anything_is_written(capsys, tmp_path, command, setting):
    run = tmp_path / "r"
    assert main([command, "--device", "cpu", "--set", setting, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "choose one of" in err and len(err.strip().splitlines()) == 1
    assert not run.exists()
