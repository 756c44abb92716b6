"""``python -m fedbus_orchestration``."""

from fedbus_orchestration.main import run

if __name__ == "__main__":
    run()
