"""Draw the computation graph of a small MLP's loss: the picture in the README (needs Graphviz's dot)."""

from pathlib import Path

import npgen
from npgen import F, nn

npgen.manual_seed(0)
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
x = npgen.randn(256, 2)
y = ((x[:, :1] * x[:, 1:]) > 0.0).numpy().astype("float32")
loss = F.binary_cross_entropy_with_logits(model(x), y)
print(npgen.viz.draw(loss, Path(__file__).with_name("mlp_loss_graph.svg"), model))
