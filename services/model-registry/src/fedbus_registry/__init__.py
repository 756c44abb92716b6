"""fedbus_registry."""
