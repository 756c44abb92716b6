"""``python -m fedbus_accountant`` (``--reset-state`` drops its tables and exits)."""

from fedbus_accountant.main import run

run()
