"""fedbus_aggregator."""
