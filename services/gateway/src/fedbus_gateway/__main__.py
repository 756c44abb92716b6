"""``python -m fedbus_gateway``."""

from fedbus_gateway.main import run

run()
