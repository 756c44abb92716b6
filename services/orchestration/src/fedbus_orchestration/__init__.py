"""fedbus_orchestration."""
