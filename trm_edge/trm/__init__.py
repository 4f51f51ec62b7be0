"""The Tiny Recursive Model in PyTorch: network, losses, optimiser, trainer (data, distribution, evaluation, resume
state) and checkpoints. The configs it is built from live in ``trm_edge.config`` (torch-free)."""
