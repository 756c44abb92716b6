"""Pure registry rules: names, what is registrable, waiting for rounds, what a version holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedbus.events import BaseModelRef, JobStatus, ModelRef, PrivacyGuarantee, PrivacyMode
from fedbus_registry.versions import (
    JobInfo,
    RoundRecord,
    is_registrable,
    missing_rounds,
    model_name,
    new_version,
)

if TYPE_CHECKING:
    from .conftest import MakeJob

REF = ModelRef(object_key="jobs/j/round-2/global/" + "a" * 64, size_bytes=10, sha256="a" * 64)


def test_the_name_is_model_dash_dataset(make_job: MakeJob) -> None:
    job = make_job(model="minilm-lora", dataset="sst2-clients")

    assert model_name(job.spec) == "minilm-lora-sst2-clients"


def test_completed_and_budget_exhausted_jobs_with_a_final_model_are_registrable(
    make_job: MakeJob,
) -> None:
    job = make_job()

    assert is_registrable(job.completed(REF))
    assert is_registrable(job.completed(REF, status=JobStatus.BUDGET_EXHAUSTED))
    assert not is_registrable(job.completed(None))


def test_cancelled_jobs_are_registered_only_when_configured(make_job: MakeJob) -> None:
    cancelled = make_job().completed(REF, status=JobStatus.CANCELLED)

    assert not is_registrable(cancelled)
    assert is_registrable(cancelled, register_cancelled=True)


def test_missing_rounds_lists_rounds_not_seen_yet() -> None:
    assert missing_rounds(3, [1, 3]) == [2]
    assert missing_rounds(2, [2, 1, 3]) == []
    assert missing_rounds(0, []) == []


def test_a_version_unites_participants_and_takes_the_job_metrics(make_job: MakeJob) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    rounds = [
        RoundRecord(2, ("c3", "c1"), {"accuracy": 0.8}, REF),
        RoundRecord(1, ("c1", "c2"), {"accuracy": 0.6}, REF),
    ]
    guarantee = PrivacyGuarantee(mode=PrivacyMode.CENTRAL_DP, epsilon=2.5, delta=1e-5)
    done = job.completed(REF, guarantee=guarantee, accuracy=0.81)

    info = JobInfo(job.job_id, job.tenant, job.spec)
    version = new_version(info, rounds, done, guarantee=guarantee)

    assert version.name == "cnn-mnist"
    assert version.tenant == job.tenant
    assert version.participants == ("c1", "c2", "c3")
    assert version.metrics == {"accuracy": 0.81}
    assert version.round_metrics == ((1, {"accuracy": 0.6}), (2, {"accuracy": 0.8}))
    assert version.privacy_mode is PrivacyMode.CENTRAL_DP
    assert version.guarantee == guarantee
    assert version.strategy.name == "fedprox"
    assert version.strategy.options == {"proximal_mu": 0.01}
    assert version.artifact == REF
    assert version.rounds == 2


def test_without_job_metrics_a_version_takes_the_last_rounds(make_job: MakeJob) -> None:
    job = make_job()
    rounds = [
        RoundRecord(1, ("c1",), {"loss": 0.9}, REF),
        RoundRecord(2, ("c1",), {"loss": 0.4}, REF),
    ]

    info = JobInfo(job.job_id, job.tenant, job.spec)
    version = new_version(info, rounds, job.completed(REF), guarantee=None)

    assert version.metrics == {"loss": 0.4}


def test_a_lora_version_names_the_base_model_of_its_last_round(make_job: MakeJob) -> None:
    job = make_job()
    base = BaseModelRef(name="minilm-classifier", sha256="c" * 64)
    rounds = [
        RoundRecord(1, ("c1",), {"loss": 0.9}, REF, base),
        RoundRecord(2, ("c1",), {"loss": 0.4}, REF, base),
    ]

    info = JobInfo(job.job_id, job.tenant, job.spec)
    version = new_version(info, rounds, job.completed(REF), guarantee=None)
    plain = new_version(
        info, [RoundRecord(1, ("c1",), {}, REF)], job.completed(REF), guarantee=None
    )

    assert version.base_model == base
    assert plain.base_model is None
