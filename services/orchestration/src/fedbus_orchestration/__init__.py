"""fedbus orchestration: the job state machine, client selection, round deadlines and retries."""

from fedbus_orchestration.deps import Deps, deps_from
from fedbus_orchestration.handlers import HANDLERS
from fedbus_orchestration.selection import TrainerInfo, eligible_trainers, select_clients
from fedbus_orchestration.settings import OrchestrationSettings
from fedbus_orchestration.state import Job, JobState, Policy, Transition
from fedbus_orchestration.store import ConcurrentUpdateError, JobStore
from fedbus_orchestration.validation import validate_request

__all__ = [
    "HANDLERS",
    "ConcurrentUpdateError",
    "Deps",
    "Job",
    "JobState",
    "JobStore",
    "OrchestrationSettings",
    "Policy",
    "TrainerInfo",
    "Transition",
    "deps_from",
    "eligible_trainers",
    "select_clients",
    "validate_request",
]
