"""fedbus_trainer."""
