"""Which aggregation rules can run on a SecAgg round: only those that need just the sum.

Admission is meant to call :func:`strategy_problem` and reject a job that asks for
secure aggregation with a rule that must see individual updates (it would have nothing
to work on); nothing calls it yet. Unknown rules are refused too: a rule is allowed
only once it is known to work on the sum alone.
"""

from __future__ import annotations

from fedbus.events import Strategy

__all__ = ["WORKS_ON_THE_SUM", "strategy_problem"]

WORKS_ON_THE_SUM = frozenset(
    {
        Strategy.FEDAVG,
        Strategy.FEDPROX,  # FedAvg on the server; the proximal term is the client's
        Strategy.FEDAVGM,  # server momentum on the mean delta
        Strategy.FEDADAM,  # the FedOpt family: a server optimizer on the mean delta
        Strategy.FEDYOGI,
        Strategy.FEDADAGRAD,
    }
)
"""Rules whose server step needs only the (weighted) mean of the round's deltas."""


def strategy_problem(strategy: Strategy | str) -> str | None:
    """Why ``strategy`` cannot aggregate a SecAgg round, or ``None`` when it can."""
    name = str(strategy)
    if name in {str(s) for s in WORKS_ON_THE_SUM}:
        return None
    *others, last = sorted(str(s) for s in WORKS_ON_THE_SUM)
    return (
        f"strategy {name} needs the individual client updates, and secure aggregation "
        f"reveals only their sum: choose {', '.join(others)} or {last}, or turn secure "
        "aggregation off"
    )
