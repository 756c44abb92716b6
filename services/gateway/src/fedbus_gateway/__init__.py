"""fedbus_gateway."""
