"""Faster R-CNN on multi-digit MNIST scenes: boxes, scenes, model, training task and evaluation."""
# The registry (mnistbench.models) imports detection.model while it is being built, and detection.model
# imports the registry's ModelSpec: loading the registry first, here, makes `import mnistbench.detection.model`
# work whichever of the two a program imports first.
from .. import models as _registry  # noqa: F401
