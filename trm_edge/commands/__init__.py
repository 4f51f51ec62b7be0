"""CLI command groups. Each module defines ``register(app)`` and imports heavy packages lazily."""
