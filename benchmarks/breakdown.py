"""Where an npgen training step spends its time: matrix products, elementwise ops, the optimizer, the rest.

While ``timed_parts`` is active, every op's forward and backward and every optimizer step add
their wall time to a total for their part; whatever remains of the step is the engine's own
Python (building the graph, ordering and routing gradients). Host backend only: on a GPU the
ops return before their kernels finish, so their times would land in the wrong part.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from npgen.core import Function
from npgen.optim import Optimizer

MATMUL_OPS = {"MatMul", "Linear"}  # Linear's bias add and bias gradient ride along: small next to its products


def _subclasses(cls: type) -> list[type]:
    """Every subclass of ``cls``, however deep."""
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _timed(method: Callable, part: str, totals: dict[str, float]) -> Callable:
    """``method`` that adds its wall time to ``totals[part]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[part] += time.perf_counter() - start

    return wrapper


@contextmanager
def timed_parts(by_op: bool = False) -> Iterator[dict[str, float]]:
    """Seconds spent in matmul ops, other ops and optimizer steps while active (methods restored after).

    ``by_op``: one total per op and method instead ('Linear backward', 'Adam step', ...).
    """
    totals: dict[str, float] = defaultdict(float)
    patched = []
    for cls in _subclasses(Function):
        part = "matmul" if cls.__name__ in MATMUL_OPS else "elementwise"
        patched += [(cls, name, f"{cls.__name__} {name}" if by_op else part) for name in ("forward", "backward")]
    patched += [(cls, "step", f"{cls.__name__} step" if by_op else "optimizer") for cls in _subclasses(Optimizer)]
    patched = [(cls, name, part) for cls, name, part in patched if name in vars(cls)]
    originals = [(cls, name, vars(cls)[name]) for cls, name, _ in patched]
    for cls, name, part in patched:
        setattr(cls, name, _timed(vars(cls)[name], part, totals))
    try:
        yield totals
    finally:
        for cls, name, method in originals:
            setattr(cls, name, method)


def _timed_steps(step: Callable[[], None], repeats: int, by_op: bool) -> tuple[dict[str, float], float]:
    """Mean seconds per step in each part (``timed_parts``) and in total, over ``repeats`` steps after a warm-up."""
    step()
    with timed_parts(by_op) as totals:
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        total = time.perf_counter() - start
    return {part: seconds / repeats for part, seconds in totals.items()}, total / repeats


def step_breakdown(step: Callable[[], None], repeats: int) -> dict[str, float]:
    """Mean seconds per step in each part, and in total, over ``repeats`` steps after one warm-up."""
    timed, total = _timed_steps(step, repeats, by_op=False)
    parts = {part: timed.get(part, 0.0) for part in ("matmul", "elementwise", "optimizer")}
    parts["engine"] = total - sum(parts.values())
    parts["total"] = total
    return parts


def op_breakdown(step: Callable[[], None], repeats: int) -> tuple[dict[str, float], float]:
    """Mean seconds per step in each op's forward and backward and the optimizer step (largest first); the total."""
    timed, total = _timed_steps(step, repeats, by_op=True)
    return dict(sorted(timed.items(), key=lambda item: -item[1])), total
