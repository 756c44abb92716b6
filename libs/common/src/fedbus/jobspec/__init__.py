"""One validator for a job spec, shared by the gateway and orchestration.

- :func:`check_spec` takes a spec as JSON (a decoded ``dict``): unknown fields at any level
  are refused (with "did you mean" where a known name is close), types are as strict as the
  Avro schema, and then the semantic rules run. The gateway answers 422 with every problem.
- :func:`spec_problems` takes a typed ``JobSpec`` and runs the semantic rules alone:
  ranges, the DP parameters each privacy mode needs (and refuses), and every strategy
  option against :data:`STRATEGY_OPTIONS`. Orchestration runs it on ``job.requested``.

Each problem is a :class:`SpecProblem`: a field path (``spec.privacy.delta``), a message
and a :class:`ProblemCode`. :func:`spec_json_schema` is the JSON Schema of what
:func:`check_spec` takes (closed records, length limits), for the gateway's OpenAPI document.
"""

from fedbus.jobspec.bounds import Interval
from fedbus.jobspec.model_options import model_options_problems
from fedbus.jobspec.options import (
    CENTRAL_DP_OPTIONS,
    DP_OPTIONS,
    KNOWN_OPTIONS,
    STRATEGY_OPTIONS,
    StrategyOption,
    option_value,
)
from fedbus.jobspec.problems import MAX_PROBLEMS, ProblemCode, SpecProblem
from fedbus.jobspec.rules import (
    FIELD_BOUNDS,
    MAX_NAME_LENGTH,
    MAX_OPTION_ITEMS,
    MAX_OPTIONS,
    spec_problems,
)
from fedbus.jobspec.schema import spec_json_schema
from fedbus.jobspec.shape import check_spec

__all__ = [
    "CENTRAL_DP_OPTIONS",
    "DP_OPTIONS",
    "FIELD_BOUNDS",
    "KNOWN_OPTIONS",
    "MAX_NAME_LENGTH",
    "MAX_OPTIONS",
    "MAX_OPTION_ITEMS",
    "MAX_PROBLEMS",
    "STRATEGY_OPTIONS",
    "Interval",
    "ProblemCode",
    "SpecProblem",
    "StrategyOption",
    "check_spec",
    "model_options_problems",
    "option_value",
    "spec_json_schema",
    "spec_problems",
]
