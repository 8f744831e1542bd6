"""A picture of the computation graph: Graphviz DOT text for any tensor, drawn as SVG or PNG where `dot` exists.

Each Function that made the tensor is an oval with its name and output shape; each leaf is a box:
a parameter (filled, with the name its module gave it) or a constant (dashed: data, noise, masks).
Edges follow the data from the leaves to the result. Draw a loss *before* calling backward, which
frees the graph as it goes:

    loss = model.loss(x)
    npgen.viz.draw(loss, "loss.svg", model)   # the names come from model.named_parameters()
    loss.backward()

The DOT text (``to_dot``) needs nothing. Drawing it needs Graphviz's ``dot`` program:
``apt-get install graphviz`` (Debian, Ubuntu), ``brew install graphviz`` (macOS) or
``conda install graphviz``; or paste the text into any Graphviz viewer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from .core import Function, Tensor
from .nn import Module


def to_dot(root: Tensor, module: Module | None = None) -> str:
    """The graph that made ``root`` as Graphviz DOT text (parameters named after ``module``'s names)."""
    names = {id(p): name for name, p in module.named_parameters()} if module is not None else {}
    lines = ["digraph npgen {", '  rankdir=LR; node [fontname="Helvetica", fontsize=10];']
    seen: set[int] = set()
    stack: list[Any] = [root.creator if root.creator is not None else root]
    while stack:  # depth first, without recursion, each node once
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        lines.append(f"  n{id(node)} [{_style(node, names, node is root.creator)}];")
        if isinstance(node, Function):
            for x in node.inputs:
                source = x.creator if x.creator is not None else x
                lines.append(f"  n{id(source)} -> n{id(node)};")
                stack.append(source)
    return "\n".join(lines + ["}"]) + "\n"


def _style(node: Any, names: dict[int, str], is_result: bool) -> str:
    """The DOT attributes of an op (oval) or a leaf (box): name and shape."""
    if isinstance(node, Function):
        shapes = ", ".join(str(shape) for shape, _ in node.output_meta)
        border = ", penwidth=2" if is_result else ""
        name = getattr(node, "label", type(node).__name__)
        return f'shape=ellipse{border}, label="{name}\\n{shapes}"'
    if node.requires_grad:
        name = names.get(id(node), "parameter")
        return f'shape=box, style=filled, fillcolor="#dbe9f6", label="{name}\\n{node.shape}"'
    return f'shape=box, style=dashed, label="constant\\n{node.shape}"'


def draw(root: Tensor, path: str | Path, module: Module | None = None) -> Path:
    """Write the graph of ``root`` to ``path``: .dot as text, .svg or .png through Graphviz's ``dot``."""
    path = Path(path)
    text = to_dot(root, module)
    if path.suffix == ".dot":
        path.write_text(text)
        return path
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            f"drawing {path.name} needs Graphviz's dot program (apt-get install graphviz, brew install graphviz, "
            "conda install graphviz); npgen.viz.to_dot gives the text without it"
        )
    subprocess.run([dot, f"-T{path.suffix.lstrip('.')}", "-o", str(path)], input=text, text=True, check=True)
    return path
