"""fedbus_accountant."""
