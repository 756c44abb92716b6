"""``python -m fedbus_trainer``."""

from fedbus_trainer.main import run

run()
