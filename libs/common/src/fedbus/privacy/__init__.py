"""Differential-privacy accounting, torch-free.

Opacus's three layers without torch: pure RDP math (:mod:`fedbus.privacy.rdp`), a
stateful accountant (:class:`RdpAccountant`), and an append-only privacy ledger
(:class:`PrivacyLedger`) that the privacy-accountant service persists and replays.
"""

from fedbus.privacy.accountant import RdpAccountant
from fedbus.privacy.errors import (
    InvalidPrivacyParameterError,
    PrivacyError,
    UnreachableTargetError,
)
from fedbus.privacy.ledger import LedgerEntry, Mechanism, PlannedSpend, PrivacyLedger, Spend
from fedbus.privacy.rdp import (
    DEFAULT_RDP_ORDERS,
    GaussianSteps,
    compute_epsilon,
    compute_epsilon_composed,
    compute_rdp,
    noise_multiplier_for,
    rdp_to_epsilon,
)

__all__ = [
    "DEFAULT_RDP_ORDERS",
    "GaussianSteps",
    "InvalidPrivacyParameterError",
    "LedgerEntry",
    "Mechanism",
    "PlannedSpend",
    "PrivacyError",
    "PrivacyLedger",
    "RdpAccountant",
    "Spend",
    "UnreachableTargetError",
    "compute_epsilon",
    "compute_epsilon_composed",
    "compute_rdp",
    "noise_multiplier_for",
    "rdp_to_epsilon",
]
