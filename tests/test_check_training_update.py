"""check_training_update: the reference passes, each named mistake is recognised, an unrelated
wrong answer fails with a generic line, an unattempted answer is 'not attempted'."""

import pytest
import torch

from ldm_course.course.checks.training_update import (
    TRAINING_UPDATE_CASES,
    TRAINING_UPDATE_MISCONCEPTIONS,
    check_training_update,
    run_updates,
)
from ldm_course.training.train import optimizer_update


def written_out(loss, *, model, optimizer, ema, step, max_grad_norm):
    """The exercise's solution, written as a learner would (EMA by hand)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    optimizer.step()
    d = ema.decay_at(step)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            ema.shadow[name].mul_(d).add_(value.float(), alpha=1 - d)
    return float(norm)


@pytest.mark.parametrize("fn", [optimizer_update, written_out])
def test_correct_update_passes(fn):
    assert check_training_update(fn, quiet=True).passed


def test_clipping_bites_in_the_clipping_case():
    updates, max_grad_norm, decay = TRAINING_UPDATE_CASES[1]
    norms = run_updates(
        optimizer_update, seed=11, updates=updates, max_grad_norm=max_grad_norm, decay=decay
    )["grad norms"]
    assert (norms > max_grad_norm).all()


@pytest.mark.parametrize("mistake", TRAINING_UPDATE_MISCONCEPTIONS, ids=lambda m: m.name)
def test_each_mistake_is_recognised(mistake):
    update = mistake.fn.args[0]  # the wrong update inside run_updates
    result = check_training_update(update, quiet=True)
    assert result.status == "failed"
    assert f"looks like {mistake.name}:" in result.message, result.message


def test_mistakes_are_distinct():
    names = [m.name for m in TRAINING_UPDATE_MISCONCEPTIONS]
    assert len(set(names)) == len(names) >= 7


def test_unrelated_wrong_answer_fails_without_a_name():
    def sgd_by_hand(loss, *, model, optimizer, ema, step, max_grad_norm):
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= 0.01 * g
        return 1.0

    result = check_training_update(sgd_by_hand, quiet=True)
    assert result.status == "failed" and "looks like" not in result.message
    assert len(result.message.splitlines()) == 1


def test_returning_nothing_says_what_to_return():
    def no_return(loss, *, model, optimizer, ema, step, max_grad_norm):
        optimizer_update(
            loss, model=model, optimizer=optimizer, ema=ema, step=step, max_grad_norm=max_grad_norm
        )

    result = check_training_update(no_return, quiet=True)
    assert result.status == "failed" and "return the gradient norm" in result.message


def test_not_attempted():
    def update(loss, *, model, optimizer, ema, step, max_grad_norm):
        raise NotImplementedError

    assert check_training_update(update, quiet=True).status == "not attempted"
