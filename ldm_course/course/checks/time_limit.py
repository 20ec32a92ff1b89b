"""A time limit on a learner's answer: an endless loop is stopped with a message instead of leaving
the notebook waiting forever."""

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

TIME_LIMIT = 30.0  # seconds one call of a learner's function may take before the check stops it


class TimeLimitExceeded(BaseException):
    """Raised into an answer that ran past its time limit (a BaseException: a learner's own
    `except Exception` does not swallow it)."""


def call_with_limit(fn: Callable, kwargs: dict, seconds: float | None) -> Any:
    """fn(**kwargs), stopped with TimeLimitExceeded after `seconds` (None: no limit).

    On the main thread of a Unix process (a notebook's kernel) a timer signal interrupts the answer
    between two Python operations; elsewhere the answer runs in a daemon thread that is abandoned
    (it cannot be stopped from outside) when it overruns."""
    if seconds is None:
        return fn(**kwargs)
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _call_with_alarm(fn, kwargs, seconds)
    return _call_in_thread(fn, kwargs, seconds)


def _call_with_alarm(fn: Callable, kwargs: dict, seconds: float) -> Any:
    def stop(signum, frame):
        raise TimeLimitExceeded(seconds)

    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, stop)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # outer: another timer's time left
    try:
        return fn(**kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:  # give an enclosing timer (e.g. a test's timeout) back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))


def _call_in_thread(fn: Callable, kwargs: dict, seconds: float) -> Any:
    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = fn(**kwargs)
        except BaseException as err:  # handed back to the caller's thread
            box["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeLimitExceeded(seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


def time_limit_message(seconds: float) -> str:
    return (
        f"stopped after {seconds:g} s (the check's time limit): an endless loop? (a while loop "
        "whose condition never changes, or far more steps than the exercise asks for)"
    )
