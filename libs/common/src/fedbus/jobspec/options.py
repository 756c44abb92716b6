"""The strategy options table: which numeric options each strategy reads, defaults and ranges.

This is the one table: the aggregator builds its strategies from it, the trainers read
``proximal_mu`` named here, and :func:`fedbus.jobspec.spec_problems` refuses a spec whose
options it does not allow. All options are ``StrategySpec.options`` entries (numbers).

=================  ===========================================================================
fedavg             none
fedprox            ``proximal_mu`` (required, > 0; read by the trainers, the server does FedAvg)
fedavgm            ``server_learning_rate`` (1.0, > 0), ``server_momentum`` (0.9, in [0, 1))
fedadam, fedyogi   ``server_learning_rate`` or its alias ``eta`` (0.1, > 0), ``beta_1`` (0.9),
                   ``beta_2`` (0.99), both in [0, 1), ``tau`` (1e-3, > 0)
fedadagrad         as fedadam (``beta_2`` is accepted and unused)
trimmed_mean       ``trim_ratio`` or its alias ``trim_fraction`` (0.1, in [0, 0.5))
median             none
krum               ``num_byzantine`` (0, a whole number >= 0)
multi_krum         ``num_byzantine`` (0), ``num_selected`` (a whole number >= 1; default: the
                   number of updates - num_byzantine)
=================  ===========================================================================

With ``privacy.mode = central_dp`` every strategy also takes the adaptive-clipping options in
:data:`CENTRAL_DP_OPTIONS` (Andrew et al. 2021); without central DP they have no effect and
are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fedbus.events.records import Strategy, StrategySpec
from fedbus.jobspec.bounds import POSITIVE, Interval

__all__ = [
    "CENTRAL_DP_OPTIONS",
    "DP_OPTIONS",
    "KNOWN_OPTIONS",
    "STRATEGY_OPTIONS",
    "StrategyOption",
    "option_value",
]


@dataclass(frozen=True)
class StrategyOption:
    """One numeric strategy option: its default and the values it allows.

    Attributes
    ----------
    name
        The key in ``StrategySpec.options``.
    default
        The value used when the option is absent; None when it is required or derived.
    range
        The values allowed.
    required
        A spec without the option (or an alias of it) is refused.
    alias_of
        Another name of the option ``alias_of``: give one of them, not both.
    """

    name: str
    default: float | None
    range: Interval
    required: bool = False
    alias_of: str | None = None

    @property
    def allowed(self) -> str:
        """The allowed values, in words: ``positive``, ``in [0, 0.5)``, ..."""
        return self.range.allowed

    def accepts(self, value: float) -> bool:
        """True when ``value`` is allowed."""
        return self.range.accepts(value)


def _positive(
    name: str, default: float | None, *, required: bool = False, alias_of: str | None = None
) -> StrategyOption:
    return StrategyOption(name, default, POSITIVE, required=required, alias_of=alias_of)


def _fraction(name: str, default: float) -> StrategyOption:
    return StrategyOption(name, default, Interval(0.0, 1.0, high_open=True))


def _count(name: str, default: float | None, low: float) -> StrategyOption:
    return StrategyOption(name, default, Interval(low, integer=True))


_TRIM = Interval(0.0, 0.5, high_open=True)
_FEDOPT = (
    _positive("server_learning_rate", 0.1),
    _positive("eta", 0.1, alias_of="server_learning_rate"),
    _fraction("beta_1", 0.9),
    _fraction("beta_2", 0.99),
    _positive("tau", 1e-3),
)

STRATEGY_OPTIONS: Mapping[Strategy, tuple[StrategyOption, ...]] = {
    Strategy.FEDAVG: (),
    Strategy.FEDPROX: (_positive("proximal_mu", None, required=True),),
    Strategy.FEDAVGM: (_positive("server_learning_rate", 1.0), _fraction("server_momentum", 0.9)),
    Strategy.FEDADAM: _FEDOPT,
    Strategy.FEDYOGI: _FEDOPT,
    Strategy.FEDADAGRAD: _FEDOPT,
    Strategy.TRIMMED_MEAN: (
        StrategyOption("trim_ratio", 0.1, _TRIM),
        StrategyOption("trim_fraction", 0.1, _TRIM, alias_of="trim_ratio"),
    ),
    Strategy.MEDIAN: (),
    Strategy.KRUM: (_count("num_byzantine", 0.0, 0.0),),
    Strategy.MULTI_KRUM: (_count("num_byzantine", 0.0, 0.0), _count("num_selected", None, 1.0)),
}
"""The options each strategy reads (the table in this module's docstring)."""

CENTRAL_DP_OPTIONS: tuple[StrategyOption, ...] = (
    StrategyOption("adaptive_clipping", 0.0, Interval(0.0, 1.0, integer=True)),
    _positive("clipped_count_stddev", None),
    StrategyOption("target_unclipped_quantile", 0.5, Interval(0.0, 1.0)),
    StrategyOption("clip_learning_rate", 0.2, Interval(low=0.0)),
)
"""Options of the central-DP wrapper, for any strategy: ``adaptive_clipping`` 1 turns on
adaptive clipping; ``clipped_count_stddev`` defaults to max(clients / 20, noise multiplier)."""

KNOWN_OPTIONS: Mapping[Strategy, frozenset[str]] = {
    strategy: frozenset(o.name for o in options) for strategy, options in STRATEGY_OPTIONS.items()
}
"""The option names each strategy reads."""

DP_OPTIONS: frozenset[str] = frozenset(o.name for o in CENTRAL_DP_OPTIONS)
"""The option names the central-DP wrapper reads."""


def option_value(spec: StrategySpec, name: str) -> float | None:
    """The value of option ``name`` for ``spec``: as given (under any alias), else the default.

    Parameters
    ----------
    spec
        A job's strategy and options.
    name
        An option of ``spec.name`` in :data:`STRATEGY_OPTIONS` (not an alias).

    Returns
    -------
    float | None
        The value; None when it is absent and has no default (required or derived).

    Raises
    ------
    KeyError
        When the strategy has no option ``name``.
    """
    table = STRATEGY_OPTIONS[spec.name]
    option = next((o for o in table if o.name == name and o.alias_of is None), None)
    if option is None:
        raise KeyError(f"strategy {spec.name.value} has no option {name!r}")
    for key in [name] + [o.name for o in table if o.alias_of == name]:
        if key in spec.options:
            return spec.options[key]
    return option.default
