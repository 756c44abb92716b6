"""The public REST API: ``create_app`` and the dependencies its routes share."""

from fedbus_gateway.api.app import create_app
from fedbus_gateway.api.deps import Gateway

__all__ = ["Gateway", "create_app"]
