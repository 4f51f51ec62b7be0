"""``python -m trm_edge`` (torchrun launches the trainer this way)."""

from trm_edge.cli import main

main()
