"""Graph drawing: the DOT text names every op and leaf of a loss, and dot renders it where installed."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import npgen
from npgen import F, nn, viz


def _mlp_loss():
    npgen.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    x = npgen.randn(8, 2)
    loss = F.binary_cross_entropy_with_logits(model(x), np.ones((8, 1), np.float32))
    return model, loss


def test_the_dot_text_has_an_oval_per_op_and_a_box_per_leaf_named_by_the_module():
    model, loss = _mlp_loss()
    text = viz.to_dot(loss, model)
    ops = re.findall(r'shape=ellipse[^\]]*label="([^\\]+)\\n', text)
    assert sorted(ops) == sorted(["Linear", "ReLU", "Linear", "BCEWithLogits", "Sum", "Mul"])  # mean = sum × 1/n
    parameters = re.findall(r'style=filled[^\]]*label="([^\\]+)\\n', text)
    assert sorted(parameters) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert text.count("style=dashed") == 3  # the batch, the targets, the 1/n of the mean
    assert text.count("->") == 12 and text.count("penwidth=2") == 1  # every input edge; the result stands out


def test_without_a_module_parameters_are_boxes_without_names():
    _, loss = _mlp_loss()
    assert viz.to_dot(loss).count('label="parameter') == 4


def test_dot_text_is_written_without_graphviz_and_drawing_names_what_is_missing(tmp_path, monkeypatch):
    model, loss = _mlp_loss()
    assert viz.draw(loss, tmp_path / "g.dot", model).read_text().startswith("digraph npgen {")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs Graphviz's dot program .*apt-get install graphviz"):
        viz.draw(loss, tmp_path / "g.svg", model)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_dot_draws_an_svg_with_every_parameter_name(tmp_path):
    model, loss = _mlp_loss()
    svg = viz.draw(loss, tmp_path / "g.svg", model).read_text()
    assert svg.lstrip().startswith("<?xml") and all(name in svg for name in ("0.weight", "2.bias", "BCEWithLogits"))
