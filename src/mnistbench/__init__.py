"""mnistbench: train, evaluate and compare deep-learning architectures on MNIST-like data."""

__version__ = "0.1.0"
