"""Command groups of the ``fedbus`` CLI, one module each."""

__all__: list[str] = []
