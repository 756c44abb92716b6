"""fedbus: the shared, torch-free library every fedbus service imports.

Subpackages: ``settings`` (configuration), ``events`` (the event contracts), ``bus`` (Kafka),
``storage`` (MinIO), ``aggregation`` and ``privacy`` (pure math), ``telemetry``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
