"""trm-edge: Tiny Recursive Models from training to edge devices."""

from trm_edge.version import __version__


def load_model(path):
    """Load a trm-edge checkpoint directory (or the name ``default``) as a torch ``TRM`` module."""
    from trm_edge.trm.checkpoint import load_model as _load

    return _load(path)


__all__ = ["__version__", "load_model"]
