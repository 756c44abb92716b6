"""Adapters of the aggregator's ports: the PostgreSQL round store, the executor model source.

Import them from their modules (``fedbus_aggregator.adapters.postgres``,
``fedbus_aggregator.adapters.executor``): the executor one loads torch.
"""
