"""``python -m fedbus_registry``."""

from fedbus_registry.main import run

run()
