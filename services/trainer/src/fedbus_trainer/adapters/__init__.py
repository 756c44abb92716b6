"""Adapters of the trainer: the training executor (``fedbus_trainer.adapters.executor``).

Import it from its module: it loads torch.
"""
