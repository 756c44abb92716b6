"""schemathesis: every check, over every operation of the gateway's own OpenAPI document.

The app runs in-process over the gateway's fakes (no Kafka, no PostgreSQL), one for the
run, with an API key that has every scope. Each operation gets the examples, coverage
and fuzzing phases, bounded by ``MAX_EXAMPLES`` and derandomized, so a run is the same run
on every machine. The totals (cases, statuses, failures) are printed at the end of the module.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.core.failures import Failure, FailureGroup

from fedbus.bus import InMemoryBus
from fedbus_gateway import Gateway, JobEventHub, KeyRing, RateLimiter, create_app
from fedbus_gateway.adapters import RegistryClient
from fedbus_gateway.auth import FailureLimiter

from .conftest import KEYS, key_configs
from .fakes import FakeClock, FakeJobStore, FakeRegistry

MAX_EXAMPLES = 250
"""Fuzzing examples per operation (the coverage phase adds its own, a few hundred in all)."""

CONFIG = schemathesis.Config.from_dict(
    {
        # Either scheme of the document works; ignored_auth tries each one wrong.
        "auth": {
            "openapi": {
                "HTTPBearer": {"bearer": KEYS["acme"]},
                "APIKeyHeader": {"api_key": KEYS["acme"]},
            }
        },
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "continue-on-failure": True,
        "cache": {"enabled": False},  # no .schemathesis/ state in the checkout
        # The first SSE frame is the job's status; these jobs never end, so streams stay open.
        "max-stream-events": 1,
        "operations": [
            {
                # HTTP recipients ignore header fields they do not know (RFC 9110 5.1): an
                # unknown header beside Last-Event-ID is not invalid input to be refused.
                "include-name": "GET /v1/jobs/{job_id}/events",
                "generation": {"allow-extra-parameters": False},
            },
            {
                # A spec has rules across fields that this JSON Schema cannot state
                # (min_clients <= clients_per_round, each strategy's and privacy mode's
                # options): a schema-valid spec that breaks one gets the documented 422.
                "include-name": "POST /v1/jobs",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "403", "409", "422", "429"]
                    }
                },
            },
            {
                # A reason PostgreSQL cannot store (a NUL, a lone surrogate) is the documented
                # 422 naming the field; the JSON Schema of a string cannot exclude them.
                "include-name": "POST /v1/jobs/{job_id}/cancel",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
                    }
                },
            },
            {
                # Rows must have the model's feature shape, which the document cannot state
                # (it depends on the version): schema-valid rows of another shape get the
                # documented 422, too many 413; the fakes hold no model, so mostly 404.
                "include-name": "POST /v1/models/{name}/versions/{version}:predict",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "403", "404", "413", "422", "429"]
                    }
                },
            },
        ],
    }
)


class Totals:
    """What the run did, across operations: cases, status codes, distinct failures."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.failures: set[tuple[str, str]] = set()

    def line(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (f"schemathesis: {self.cases.total()} cases over {len(self.cases)} operations; "
                f"statuses {{{statuses}}}; {len(self.failures)} distinct failures")  # fmt: skip


TOTALS = Totals()


def gateway_app() -> Any:
    """The app over fresh fakes; rate and failed-auth limits no run can spend."""
    registry = RegistryClient(
        "http://registry.test", transport=httpx.MockTransport(FakeRegistry().handle)
    )
    gateway = Gateway(
        jobs=FakeJobStore(), publisher=InMemoryBus(), hub=JobEventHub(), registry=registry,
        keys=KeyRing(key_configs()), limiter=RateLimiter(rate=1.0, burst=10**9, clock=FakeClock()),
        sse_ping_s=0, failures=FailureLimiter(limit=10**9, window_s=60.0),
    )  # fmt: skip
    return create_app(gateway)


# Loaded at import: the lazy loader (schemathesis.pytest.from_fixture) fails under pytest 9.
APP = gateway_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@schema.parametrize()
def test_every_check_passes_on_every_operation(case: schemathesis.Case[Any]) -> None:
    """Every response conforms to the document; valid input is accepted, invalid refused."""
    TOTALS.cases[case.operation.label] += 1
    try:
        response = case.call_and_validate()
    except (Failure, FailureGroup) as exc:
        found = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
        TOTALS.failures |= {(case.operation.label, f.title) for f in found}
        raise
    TOTALS.statuses[response.status_code] += 1


def test_the_run_reached_every_operation(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the generated tests (file order): prints the totals, checks the coverage."""
    if not TOTALS.cases:
        pytest.skip("the schemathesis tests did not run (deselected)")
    lines = [TOTALS.line()] + [f"  failure: {op}: {title}" for op, title in sorted(TOTALS.failures)]
    with capsys.disabled():
        print("\n" + "\n".join(lines))

    documented = {
        f"{m.upper()} {path}" for path, ops in APP.openapi()["paths"].items() for m in ops
    }
    assert set(TOTALS.cases) == documented
    assert min(TOTALS.cases.values()) >= 20, TOTALS.cases
    assert TOTALS.failures == set()
