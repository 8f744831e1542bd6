"""Would the suite notice a broken gradient? Break each VJP and optimizer formula by one token and see.

For every backward method (and ``unbroadcast``) in npgen/ops.py and npgen/functional.py, and the
update formulas in npgen/optim.py, each one-token change below makes a mutant: an arithmetic
operator swapped (+ −, * /), a unary minus dropped, a number changed (0.5 → 1.5, −1 → −2: factors
and axes), a comparison loosened or flipped, ``.T`` dropped. Each mutant runs the quick gradient
and optimizer tests (stopping at the first failure); a mutant that survives them runs the whole
default suite. Run it where PyTorch is not installed, so only torch-free tests can catch a mutant:

    python tests/mutate_formulas.py [--jobs 2] [--only FILE]

It works on a copy of the project in a temporary directory and prints every surviving mutant.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import shutil
import subprocess
import sys
import tempfile
import tokenize
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).parents[1]
TARGETS = {
    "npgen/ops.py": {"backward", "unbroadcast"},
    "npgen/functional.py": {"backward"},
    "npgen/optim.py": {"step", "adam_update", "_adam_chunk", "clip_grad_norm"},
}
QUICK = [
    "tests/test_ops_gradients.py",
    "tests/test_optim.py",
    "tests/test_engine.py",
    "tests/test_engine_semantics.py",
    "tests/test_nn.py",
    "tests/test_vae.py",
    "tests/test_gan.py",
    "tests/test_flow.py",
]
SWAPS = {"+": "-", "-": "+", "*": "/", "/": "*", ">": ">=", ">=": ">", "<": "<=", "<=": "<", "==": "!="}


def _lines_to_mutate(source: str, names: set[str]) -> set[int]:
    """Line numbers inside the functions (or methods) called one of ``names``, docstrings excluded."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name in names:
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body  # skip the docstring
            for statement in body:
                lines.update(range(statement.lineno, statement.end_lineno + 1))
    return lines


def mutants(path: str) -> list[tuple[str, str]]:
    """(description, mutated source) for every one-token change in the formulas of ``path``."""
    source = (ROOT / path).read_text(encoding="utf-8")
    lines = _lines_to_mutate(source, TARGETS[path])
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    found = []
    for i, tok in enumerate(tokens):
        if tok.start[0] not in lines:
            continue
        replacements = []
        if tok.type == tokenize.OP and tok.string in SWAPS:
            replacements.append(SWAPS[tok.string])
            previous = tokens[i - 1].string if i else ""
            if tok.string == "-" and previous in "(,=[" + "*/+-":  # a unary minus: drop it
                replacements.append("")
        elif tok.type == tokenize.NUMBER:
            replacements.append(repr(ast.literal_eval(tok.string) + 1))
        elif tok.type == tokenize.NAME and tok.string == "T" and tokens[i - 1].string == ".":
            replacements.append("")  # with the dot removed below
        for new in replacements:
            start = offsets[tok.start[0] - 1] + tok.start[1] - (1 if tok.string == "T" else 0)
            end = offsets[tok.end[0] - 1] + tok.end[1]
            mutated = source[:start] + new + source[end:]
            found.append((f"{path}:{tok.start[0]}: {tok.line.strip()!r}: {tok.string!r} → {new!r}", mutated))
    return found


def killed(copy: Path, path: str, mutated: str, tests: list[str]) -> bool:
    """Whether the tests fail with ``mutated`` as ``path`` in the copy of the project at ``copy``."""
    (copy / path).write_text(mutated, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(copy)},
        timeout=1800,
    )
    return done.returncode != 0


def main() -> None:
    """Run every mutant and print the survivors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once, each in its own copy")
    parser.add_argument("--only", choices=sorted(TARGETS), help="mutate this file only")
    args = parser.parse_args()
    try:
        import torch  # noqa: F401

        sys.exit("PyTorch is installed: the parity tests would catch mutants that the torch-free suite misses")
    except ImportError:
        pass
    originals = {path: (ROOT / path).read_text(encoding="utf-8") for path in TARGETS}
    work = [(path, *m) for path in ([args.only] if args.only else TARGETS) for m in mutants(path)]
    print(f"{len(work)} mutants", flush=True)
    copies = []
    for _ in range(args.jobs):
        copy = Path(tempfile.mkdtemp()) / "npgen"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "__pycache__"))
        copies.append(copy)

    def check(job: int) -> str | None:
        copy = copies[job % args.jobs]
        path, description, mutated = work[job]
        try:
            quick = [*QUICK, "-k", "not fake and not cupy"]  # one device first: most mutants fail at once
            alive = not killed(copy, path, mutated, quick) and not killed(copy, path, mutated, ["tests"])
        finally:
            (copy / path).write_text(originals[path], encoding="utf-8")  # the project as it was at the start
        print(("SURVIVED " if alive else "killed   ") + description, flush=True)
        return description if alive else None

    # one job per copy at a time: job j runs in copy j % jobs, and pool threads take jobs in order
    survivors = []
    for batch in range(0, len(work), args.jobs):
        with ThreadPoolExecutor(args.jobs) as pool:
            survivors += [s for s in pool.map(check, range(batch, min(batch + args.jobs, len(work)))) if s]
    print(f"\n{len(work) - len(survivors)} of {len(work)} mutants killed; survivors:")
    print("\n".join(survivors) or "none")


if __name__ == "__main__":
    main()
