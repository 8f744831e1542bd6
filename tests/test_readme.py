"""The README's code does what the README says it does."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_ten_line_engine_example_prints_the_loss_the_readme_states():
    example = next(b for b in BLOCKS if "manual_seed(0)" in b)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(example, "README.md", "exec"), {})
    printed = output.getvalue().strip()
    assert f"It prints `{printed}`" in README


def test_the_custom_function_example_passes_gradcheck():
    example = next(b for b in BLOCKS if "class Square" in b)
    namespace: dict = {}
    exec(
        compile(
            "import npgen\n" + example.replace("npgen.gradcheck(", "result = npgen.gradcheck("), "README.md", "exec"
        ),
        namespace,
    )
    assert namespace["result"] is True


def test_the_own_training_loop_example_keeps_the_parameters_and_lowers_the_loss():
    setup = next(b for b in BLOCKS if "manual_seed(0)" in b)
    loop = next(b for b in BLOCKS if "p -= 0.1 * p.grad" in b)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(setup.replace("range(300)", "range(1)"), "README.md", "exec"), namespace)
    parameters = namespace["model"].parameters()
    losses = []
    for _ in range(50):
        exec(compile(loop, "README.md", "exec"), namespace)
        losses.append(namespace["loss"].item())
    assert losses[-1] < 0.9 * losses[0]
    assert all(p is q for p, q in zip(namespace["model"].parameters(), parameters))
