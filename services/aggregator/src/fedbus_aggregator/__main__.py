"""``python -m fedbus_aggregator``: the same as the ``fedbus-aggregator`` command."""

from fedbus_aggregator.main import run

if __name__ == "__main__":
    run()
