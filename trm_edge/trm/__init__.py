"""The Tiny Recursive Model in PyTorch: config, network, losses, trainer and checkpoints."""
