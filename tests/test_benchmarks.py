"""The benchmark script's tables are well formed (its numbers are for benchmarks/RESULTS.md, not for tests)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench", Path(__file__).parents[1] / "benchmarks" / "run.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_overhead_rows_name_the_backend_op_and_a_positive_time():
    rows = bench.overhead_rows("numpy", repeats=1)
    assert len(rows) == 5
    for row in rows:
        match = re.fullmatch(r"\| numpy \| (\w+) \| ([0-9.]+) \|", row)
        assert match and float(match.group(2)) > 0


def test_the_machine_line_names_numpy_and_the_backends_say_why_cupy_is_missing():
    assert "numpy" in bench.machine()
    names, note = bench.available_backends()
    assert names[0] == "numpy" and (len(names) == 2 or "cupy" in note)


def test_the_blas_floor_is_positive_and_the_flow_lists_eight_hidden_products():
    one = bench.blas_floor_seconds("numpy", [(8, 8, 8)], repeats=3)
    assert one > 0
    assert bench.FORWARD_MATMULS["flow (batch 128)"].count((128, 1024, 1024)) == 8
