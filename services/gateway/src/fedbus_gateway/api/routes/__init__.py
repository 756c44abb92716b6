"""The API's routers, one module per resource."""

from fedbus_gateway.api.routes import events, jobs, models

__all__ = ["events", "jobs", "models"]
