"""The trm-edge version (one place: the package, pyproject.toml and every manifest read it)."""

__version__ = "0.1.0"
