"""Checks 4 and 5: the artifacts in MinIO, and a FedAvg round recomputed from its updates.

Check 4 reads every object an event references (trainers' updates, global models, final and
registered models), decrypts it with the deployment's artifact keys when it is encrypted at
rest, and compares its size and SHA-256 with the event's: the SHA-256 in every event is the
plaintext's (``fedbus.storage``), so an auditor without the keys can only see that an object
exists. Each ``model.registered`` must name ``job.completed``'s final model, and that model
must be the global model the aggregator published in one of the job's ``round.completed``
(not necessarily the highest round number's: a diverged round is discarded).

Check 5 (``--reaggregate``) recomputes each FedAvg (or FedProx: the same server step) round
from the global model it started from and the participants' stored updates with fedbus's own
:class:`~fedbus.aggregation.FedAvg`, whose fixed-point sum gives the same bytes in any
order, and compares the SHA-256 of the result's safetensors bytes with the published one.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedbus.aggregation import ClientUpdate, FedAvg
from fedbus.errors import NonRetryableError
from fedbus.events import (
    Event,
    JobCompleted,
    ModelRef,
    ModelRegistered,
    PrivacyMode,
    RoundCompleted,
    RoundStarted,
    Strategy,
    UpdateSubmitted,
)
from fedbus.storage import ArtifactStore, sha256_hex, tensors_to_bytes
from fedbus_cli.audit.histories import events_of
from fedbus_cli.audit.report import Check
from fedbus_cli.audit.signatures import Seen

__all__ = ["NO_ARTIFACT_KEYS", "check_artifacts", "reaggregate"]

NO_ARTIFACT_KEYS = (
    "no artifact keys were given (FEDBUS_ARTIFACT_KEYS or FEDBUS_ARTIFACT_KEYS_FILE): an object "
    "encrypted at rest cannot match the plaintext size and SHA-256 its event names"
)

_SERVER_FEDAVG = (Strategy.FEDAVG, Strategy.FEDPROX)


def _referenced(event: Event) -> ModelRef | None:
    """The object ``event`` references, if any."""
    if isinstance(event, UpdateSubmitted):
        return event.update
    if isinstance(event, RoundCompleted | RoundStarted):
        return event.global_model
    if isinstance(event, JobCompleted):
        return event.final_model
    if isinstance(event, ModelRegistered):
        return event.artifact
    return None


def _refs(seen: Sequence[Seen]) -> dict[tuple[str, str], ModelRef]:
    """Every referenced object, once per (key, SHA-256)."""
    refs: dict[tuple[str, str], ModelRef] = {}
    for s in seen:
        ref = _referenced(s.event)
        if ref is not None:
            refs.setdefault((ref.object_key, ref.sha256), ref)
    return refs


async def check_artifacts(
    jobs: dict[str, list[Seen]], store: ArtifactStore, *, artifact_keys: bool = True
) -> Check:
    """Check 4 over every job's events (``jobs``: each job's events, in log order).

    ``artifact_keys``: whether ``store`` was given the deployment's artifact keys; without
    them a failed check says that encrypted objects cannot match (:data:`NO_ARTIFACT_KEYS`).
    """
    check = Check("artifacts", "4. Artifacts and registered models")
    for _job_id, seen in sorted(jobs.items()):
        for ref in _refs(seen).values():
            check.checked += 1
            try:
                await store.get_bytes(ref)
            except NonRetryableError as exc:
                check.fail(ref.object_key, str(exc).removeprefix(f"{ref.object_key}: "))
        _check_registered(check, seen)
    if check.checked == 0:
        check.reason = "no event references an artifact"
    _note_missing_keys(check, artifact_keys)
    return check


def _note_missing_keys(check: Check, artifact_keys: bool) -> None:
    if check.findings and not artifact_keys:
        check.notes.append(NO_ARTIFACT_KEYS)


def _check_registered(check: Check, seen: Sequence[Seen]) -> None:
    """Each ``model.registered`` names ``job.completed``'s final model, which is the global
    model of one of the job's signed ``round.completed``. Not necessarily the last round
    number's: orchestration discards a diverged round (its ``round.completed`` stays on the log)
    and goes on from the last good model, so ``rounds_completed`` counts good rounds only."""
    rounds: dict[str, int] = {}
    for done in events_of(seen, RoundCompleted):
        rounds.setdefault(done.global_model.sha256, done.round)
    finals = [c.final_model for c in events_of(seen, JobCompleted) if c.final_model is not None]
    for s in seen:
        if not isinstance(s.event, ModelRegistered):
            continue
        registered = s.event.artifact
        if not finals:
            check.fail(s.where, "registered, but no job.completed names a final model")
            continue
        final = finals[-1]
        round_ = rounds.get(registered.sha256)
        if final.sha256 != registered.sha256:
            check.fail(s.where, f"registered SHA-256 {registered.sha256} is not job.completed's "
                                f"final model ({final.sha256})")  # fmt: skip
        elif round_ is None:
            check.fail(s.where, f"registered SHA-256 {registered.sha256} is no round's global "
                                "model: no round.completed of the job names it")  # fmt: skip
        else:
            check.notes.append(
                f"{s.event.name} v{s.event.version} is round {round_}'s aggregate "
                f"({registered.sha256[:16]})"
            )


async def reaggregate(
    jobs: dict[str, list[Seen]], store: ArtifactStore, *, artifact_keys: bool = True
) -> Check:
    """Check 5: recompute every FedAvg round that can be recomputed; say why the rest cannot
    (``artifact_keys``: as for :func:`check_artifacts`)."""
    check = Check("reaggregate", "5. Rounds recomputed from the stored updates")
    for job_id, seen in sorted(jobs.items()):
        for s in seen:
            if isinstance(s.event, RoundCompleted):
                why = await _recompute(check, s.event, s.where, seen, store)
                if why:
                    check.notes.append(f"job {job_id} round {s.event.round}: {why}")
    if check.checked == 0:
        check.reason = "no round could be recomputed (see the notes)"
    _note_missing_keys(check, artifact_keys)
    return check


async def _recompute(
    check: Check, done: RoundCompleted, where: str, seen: Sequence[Seen], store: ArtifactStore
) -> str | None:
    """Recompute one round; returns why it was not, or None when it was."""
    needed = set(done.participants)
    starts = [e for e in events_of(seen, RoundStarted)
              if e.round == done.round and needed <= set(e.selected_clients)]  # fmt: skip
    if not starts:
        return "no round.started selected its participants"
    started = starts[-1]
    if started.privacy.mode is PrivacyMode.CENTRAL_DP:
        return "central DP: the aggregator's Gaussian noise is secret, so not recomputable"
    if started.strategy.name not in _SERVER_FEDAVG:
        return f"strategy {started.strategy.name.value}: only FedAvg/FedProx are recomputed"
    if started.global_model is None:
        return "round 1 starts from the model plugin's initial weights (built with torch)"
    updates = {e.client_id: e for e in events_of(seen, UpdateSubmitted) if e.round == done.round}
    missing = [c for c in done.participants if c not in updates]
    check.checked += 1
    if missing:
        check.fail(where, f"no update.submitted of participants {missing}")
        return None
    try:
        model = await store.get_tensors(started.global_model)
        clients = [ClientUpdate(c, await store.get_tensors(updates[c].update),
                                updates[c].num_samples) for c in done.participants]  # fmt: skip
    except NonRetryableError as exc:
        check.fail(where, f"cannot read the round's inputs: {exc}")
        return None
    digest = sha256_hex(tensors_to_bytes(FedAvg().aggregate(global_model=model, updates=clients)))
    if digest != done.global_model.sha256:
        check.fail(where, f"recomputed FedAvg {digest} != published {done.global_model.sha256}")
    return None
