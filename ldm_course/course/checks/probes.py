"""What a check looks at in a learner's answer besides its values: what it returned (type, dtype,
device), whether it changed its inputs, and, when it is wrong and no listed misconception matches,
whether it depends on the global RNG or is off by a constant factor (time_limit.py stops an
answer that hangs).

Each probe returns None (nothing found) or the problem with its fix, in a few words.

    result_kind_problem   a NumPy array, a Python int or float, a float64 tensor, the wrong device
    snapshot / changed    inputs changed in place (x_0.mul_(...), +=, x[...] = ...)
    rng_hint              the result changes with the global random state
    factor_problem        got = c * expected everywhere (or per item): c named, with what it means
"""

from collections.abc import Iterator
from typing import Any

import torch

SD_SCALE_FACTOR = 0.18215  # Stable Diffusion's scale factor: learners copy it from papers
FACTOR_RTOL = 1e-3  # a factor "matches" a meaningful number within this relative distance


# ---- what the answer returned ----


def _is_numpy(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "numpy"


def result_kind_problem(got: Any, expected: Any, *, number_ok: bool = False) -> str | None:
    """The result's type, dtype or device, where they differ from the reference's in a way the
    next cells of the notebook (or the package) would trip over. Tuples are looked at item by
    item; dicts (terms logged for display) may hold any numbers. number_ok: the answer is one
    number, and a Python float or a tensor of any float dtype will do."""
    if isinstance(expected, (tuple, list)) and isinstance(got, (tuple, list)):
        for i, (g, e) in enumerate(zip(got, expected, strict=False)):
            problem = result_kind_problem(g, e, number_ok=number_ok)
            if problem:
                return f"item {i} of the result: {problem}"
        return None
    if not torch.is_tensor(expected):
        return None
    if _is_numpy(got):
        return (
            f"returned a NumPy {type(got).__name__}; return a torch tensor: stay in torch "
            "(torch.exp, torch.sqrt, not np.exp, np.sqrt, .numpy()), or wrap it with torch.from_numpy"
        )
    if isinstance(got, bool) or (isinstance(got, int) and expected.is_floating_point()):
        return (
            f"returned a Python {type(got).__name__} ({got}); return a float tensor "
            f"({expected.dtype}): int() or // rounds the value"
        )
    if isinstance(got, float) and not number_ok:
        return (
            f"returned a Python float (.item() or float()?); return the {expected.dtype} tensor "
            "itself: a float loses the gradient and the device"
        )
    if not torch.is_tensor(got):
        return None
    if got.device != expected.device:
        return (
            f"the result is on {got.device}, expected on {expected.device}, where the inputs are: "
            "create tensors with device=x.device or move them with .to(x.device)"
        )
    if expected.is_floating_point() and not got.is_floating_point():
        return (
            f"dtype {got.dtype}, expected {expected.dtype}: an integer or bool tensor where floats "
            "belong (// or .long()?)"
        )
    if expected.dtype == torch.float32 and got.dtype != torch.float32 and not number_ok:
        why = (
            "a float64 tensor (alpha_bar is one) mixed in without .to(x.dtype), or .double()?"
            if got.dtype == torch.float64
            else "cast back with .to(x.dtype)."
        )
        return (
            f"dtype {got.dtype}, expected {expected.dtype} like the inputs: {why} The package's "
            "next steps need float32"
        )
    return None


def device_error_hint(error: Exception) -> str | None:
    """A hint when `error` is PyTorch's complaint about tensors on two devices."""
    text = str(error)
    if "same device" in text or ("cuda" in text and "cpu" in text and "device" in text):
        return (
            "tensors on two devices: the model is on the GPU and the batch (or what you created) "
            "on the CPU; move them with .to(model.device), or create them with device=x.device"
        )
    return None


# ---- inputs changed in place ----


def _tensors_of(name: str, value: Any) -> Iterator[tuple[str, Any, Any]]:
    """(name, the live object, a copy of its state) for the tensors inside an input."""
    if torch.is_tensor(value):
        yield name, value, value.detach().clone()
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors_of(f"{name}[{i}]", v)
    elif isinstance(value, torch.nn.Module):
        for key, t in value.state_dict(keep_vars=True).items():
            yield f"{name}.{key}", t, t.detach().clone()
        for key, v in vars(value).items():  # plain numbers such as scale_factor
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not key.startswith("_"):
                yield f"{name}.{key}", (value, key), v
    elif hasattr(value, "__dict__") and not isinstance(value, (type, torch.Generator)):
        for key, v in vars(value).items():  # e.g. a DiagonalGaussian's mean and logvar
            if torch.is_tensor(v):
                yield f"{name}.{key}", v, v.detach().clone()


def snapshot(inputs: dict) -> list[tuple[str, Any, Any]]:
    """A copy of every tensor reachable from the inputs, to compare with after the call."""
    return [entry for k, v in inputs.items() for entry in _tensors_of(k, v)]


def _unchanged(live: Any, copy: Any) -> bool:
    if isinstance(live, tuple):  # (object, attribute): a plain number
        obj, key = live
        return getattr(obj, key, None) == copy
    live = live.detach()
    if live.shape != copy.shape or live.dtype != copy.dtype:
        return False
    same = live == copy
    if live.is_floating_point():
        same = same | (live.isnan() & copy.isnan())
    return bool(same.all())


def changed_inputs_problem(before: list[tuple[str, Any, Any]]) -> str | None:
    changed = [name for name, live, copy in before if not _unchanged(live, copy)]
    if not changed:
        return None
    first = changed[0].split(".")[0].split("[")[0]
    names = ", ".join(f"`{n}`" for n in changed[:3]) + (" ..." if len(changed) > 3 else "")
    return (
        f"changed its input {names} in place (an in-place op on an argument: {first}.mul_(...), "
        f"+=, {first}[...] = ...): the caller's tensor changes too; compute a new tensor instead "
        f"({first} * a, not {first} *= a)"
    )


# ---- the global RNG ----


def rng_hint(inputs: dict) -> str:
    """What to use instead of the global RNG, given what the exercise hands over."""
    if any(isinstance(v, torch.Generator) for v in inputs.values()):
        return (
            "its result changes with the global random state: draw every random number from the "
            "`generator` you were given (torch.randn(shape, generator=generator)); "
            "torch.randn_like, and torch.randn or torch.randint without generator=, use the global RNG"
        )
    given = [k for k, v in inputs.items() if torch.is_tensor(v) and k in ("noise", "eps", "z_T")]
    use = " and ".join(f"`{k}`" for k in given) or "the inputs it is given"
    return (
        f"its result changes with the global random state: use {use} instead of drawing random "
        "numbers (torch.randn_like and torch.randn draw from the global RNG)"
    )


# ---- a constant factor ----


def _meanings(inputs: dict) -> list[tuple[float, str]]:
    """Numbers a wrong factor often equals, each with what it means, from the exercise's inputs."""
    out: list[tuple[float, str]] = [
        (-1.0, "the sign flipped"),
        (2.0, "a missing 1/2 (or a factor 2 too many)"),
        (0.5, "a 1/2 too many (or a missing factor 2)"),
        (SD_SCALE_FACTOR, "Stable Diffusion's scale factor 0.18215: use model.scale_factor"),
        (
            1 / SD_SCALE_FACTOR,
            "1 / 0.18215, Stable Diffusion's scale factor: use model.scale_factor",
        ),
    ]
    for k, v in inputs.items():
        tensors = [v] if torch.is_tensor(v) else []
        if isinstance(v, (list, tuple)):
            tensors = [x for x in v if torch.is_tensor(x)]
        for x in tensors[:1]:
            if x.ndim >= 1 and x.shape[0] > 1:
                n, per_item = x.shape[0], x[0].numel()
                sum_ = f"a sum over the batch where a mean belongs (batch size of `{k}`: {n})"
                mean_ = f"a mean over the batch where a sum belongs (batch size of `{k}`: {n})"
                out += [(float(n), sum_), (1 / n, mean_)]
                if per_item > 1:
                    out += [
                        (
                            float(per_item),
                            f"a sum where a mean belongs ({per_item} values per item of `{k}`)",
                        ),
                        (
                            1 / per_item,
                            f"a mean where a sum belongs ({per_item} values per item of `{k}`)",
                        ),
                        (
                            float(x.numel()),
                            f"a sum where a mean belongs ({x.numel()} values in `{k}`)",
                        ),
                        (
                            1 / x.numel(),
                            f"a mean where a sum belongs ({x.numel()} values in `{k}`)",
                        ),
                    ]
        if isinstance(v, float) and abs(v) > 1e-8 and abs(v) != 1:
            out += [
                (v, f"`{k}` = {v:.4g} applied where it does not belong (or twice)"),
                (1 / v, f"a division by `{k}` = {v:.4g} where it does not belong"),
            ]
        s = getattr(v, "scale_factor", None)
        if isinstance(s, float) and s not in (0.0, 1.0):
            scaled = (
                f"the scale factor ({s:.4g}) applied twice, or a division by it where it multiplies"
            )
            divided = (
                f"a division by the scale factor ({s:.4g}) where it multiplies, or applied twice"
            )
            out += [(s, scaled), (s * s, scaled), (1 / s, divided), (1 / (s * s), divided)]
    return out


def _name_factor(c: float, meanings: list[tuple[float, str]]) -> str | None:
    for value, meaning in meanings:
        if abs(c - value) <= FACTOR_RTOL * abs(value):
            return meaning
    return None


def _factor(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    """c with got = c * expected within a relative 1e-4 (None if there is no such c)."""
    big = expected.abs() > 1e-6 * max(expected.abs().max().item(), 1e-30)
    if not big.any():
        return None
    c = (got[big] / expected[big]).median().item()
    ok = (got - c * expected).abs() <= 1e-6 + 1e-4 * (c * expected).abs()
    return c if bool(ok.all()) else None


def _parts(got: Any, expected: Any, label: str = "the result") -> Iterator[tuple[str, Any, Any]]:
    if isinstance(expected, (tuple, list)) and isinstance(got, (tuple, list)):
        for i, (g, e) in enumerate(zip(got, expected, strict=False)):
            yield from _parts(g, e, f"item {i} of the result" if label == "the result" else label)
    elif isinstance(expected, dict) and isinstance(got, dict):
        for k, e in expected.items():
            if k in got:
                yield from _parts(got[k], e, f"{k!r} in {label}")
    else:
        yield label, got, expected


def _as_tensor(value: Any) -> torch.Tensor | None:
    if torch.is_tensor(value):
        return value.detach().double().cpu()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def _reduced_over_the_batch(g: torch.Tensor, e: torch.Tensor) -> str | None:
    """One number where one per item belongs: is it their sum or their mean?"""
    for how, value in (("sum", e.sum()), ("mean", e.mean())):
        if (g - value).abs() <= 1e-5 + 1e-4 * value.abs():
            return (
                f"is one number, the {how} of the {e.numel()} expected values: return one value "
                f"per item, shape {tuple(e.shape)} (reduce over the other dimensions only)"
            )
    return None


def factor_problem(got: Any, expected: Any, inputs: dict) -> str | None:
    """When a part of the result (the first such part: the result itself, an item of a tuple, an
    entry of a dict) is the reference times one constant c, or each item times its own constant:
    c and what it usually means."""
    meanings = _meanings(inputs)
    for label, g, e in _parts(got, expected):
        g_t, e_t = _as_tensor(g), _as_tensor(e)
        if g_t is None or e_t is None or not g_t.isfinite().all():
            continue
        if g_t.numel() == 1 and e_t.numel() > 1 and e_t.isfinite().all():
            reduced = _reduced_over_the_batch(g_t.flatten()[0], e_t)
            if reduced:
                return f"{label} {reduced}"
        if g_t.shape != e_t.shape:
            continue
        if torch.allclose(g_t, e_t, rtol=1e-4, atol=1e-5):
            continue  # this part is right; look at the next
        if not e_t.isfinite().all():
            continue
        if g_t.numel() > 1 and not g_t.any():
            return f"{label} is all zeros"
        c = _factor(g_t, e_t)
        if c is not None:
            meaning = _name_factor(c, meanings)
            if meaning is None and g_t.numel() == 1:
                continue  # one number is always some multiple of another: nothing learned
            about = f": {meaning}" if meaning else ": a constant missing, or one too many"
            return f"{label} is {c:.6g} times the expected one everywhere{about}"
        if g_t.ndim >= 2 and g_t.shape[0] > 1:
            per_item = [_factor(gi, ei) for gi, ei in zip(g_t, e_t, strict=True)]
            if all(ci is not None for ci in per_item):
                shown = ", ".join(f"{ci:.4g}" for ci in per_item[:4])
                return (
                    f"each item of {label} is off by its own constant factor ({shown}): a "
                    "per-item normalisation missing or extra (a division by a norm, or by "
                    "sin(theta), ...)"
                )
    return None
