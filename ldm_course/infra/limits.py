"""The allowed range of every numeric setting, checked where a value is parsed (`--set`) and again
where a config enters training, so a mistyped number is one clear error before any work, never a
quiet wrong run (`steps=-5` writing an untrained model, a negative weight switching a loss off)."""

import math
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class Range:
    """low <= value <= high (high None: unbounded; open_high: high itself excluded)."""

    low: float
    high: float | None = None
    open_high: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value) or value < self.low:
            return False
        return self.high is None or value < self.high or (value == self.high and not self.open_high)

    def describe(self) -> str:
        if self.high is None:
            return f">= {self.low:g}"
        return f"in [{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


COUNT = Range(1)  # steps, widths, layers: zero builds nothing
OPTIONAL = Range(0)  # 0 means "off" or "never" (see the field's comment in config.py)
PROBABILITY = Range(0, 1)
SEED = Range(0, 2**32 - 1)  # step_generator multiplies it by ~1e6: must stay within 64 bits

RANGES: dict[str, Range] = {
    # training
    "steps": COUNT,
    "batch_size": COUNT,
    "lr": OPTIONAL,  # 0 is allowed: tests check that init_from weights arrive unchanged
    "min_lr": OPTIONAL,
    "warmup_steps": OPTIONAL,
    "perceptual_weight": OPTIONAL,
    "perceptual_batch": OPTIONAL,
    "kl_weight": OPTIONAL,
    "kl_warmup_steps": OPTIONAL,
    "freeze_encoder_at": OPTIONAL,
    "adversarial_weight": OPTIONAL,
    "adversarial_start": OPTIONAL,
    "ema_decay": Range(0, 1, open_high=True),
    "num_train_timesteps": Range(2),
    "cond_drop_prob": PROBABILITY,
    "min_snr_gamma": OPTIONAL,
    "size": Range(8, 4096),
    "seed": SEED,
    "log_every": OPTIONAL,
    "sample_every": OPTIONAL,
    "checkpoint_every": OPTIONAL,
    "max_grad_norm": OPTIONAL,
    "num_threads": OPTIONAL,
    # models
    "in_channels": COUNT,
    "latent_channels": COUNT,
    "base_channels": COUNT,
    "channel_mult": COUNT,
    "num_res_blocks": COUNT,
    "norm_groups": COUNT,
    "attention_levels": OPTIONAL,
    "num_heads": COUNT,
    "num_classes": COUNT,
    "dropout": Range(0, 1, open_high=True),
    "time_embed_mult": COUNT,
    "num_layers": COUNT,
}


def literal_choices(cls: type, name: str) -> tuple | None:
    """The allowed values of field `name` of the config dataclass `cls` if its type is a Literal
    (e.g. recon: Literal["l1", "l2"] -> ("l1", "l2")), read from the type hint itself so the list
    is written once, in config.py; None for any other type."""
    hint = get_type_hints(cls).get(name)
    return get_args(hint) if get_origin(hint) is Literal else None


def check_setting(name: str, value: Any, *, label: str = "", choices: tuple | None = None) -> None:
    """Raise a one-line error naming the setting (`label`, e.g. "vae.base_channels"; default
    `name`) and its allowed range (or `choices`, a Literal field's values: `literal_choices`) if
    `value` is outside it. Tuples are checked item by item; None, booleans and strings are not
    numbers here."""
    label = label or name
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{label}={value!r}: choose one of {', '.join(map(str, choices))}")
        return
    if value is None or isinstance(value, bool | str):
        return
    items = value if isinstance(value, tuple) else (value,)
    allowed = RANGES.get(name)
    if allowed is None:
        raise ValueError(
            f"setting {name!r} has no allowed range in ldm_course.infra.limits; add one"
        )
    for item in items:
        if not allowed.contains(item):
            raise ValueError(
                f"{label}={value!r} is out of range: {label} must be "
                f"{'made of numbers' if isinstance(value, tuple) else 'a finite number'} "
                f"{allowed.describe()}"
            )


def check_config(cfg: Any, prefix: str = "") -> None:
    """check_setting on every field of a (nested) config dataclass, Literal fields against the
    values of their type."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if hasattr(value, "__dataclass_fields__"):
            check_config(value, f"{prefix}{f.name}.")
            continue
        choices = literal_choices(type(cfg), f.name)
        check_setting(f.name, value, label=f"{prefix}{f.name}", choices=choices)


def check_batch_size(batch_size: int, available: int, what: str) -> None:
    """A batch is drawn without replacement: it cannot hold more than the data has."""
    if batch_size > available:
        raise ValueError(
            f"batch_size={batch_size} is larger than the dataset ({available} {what}); "
            f"use --set batch_size={available} or less"
        )
