"""The training executor: one task in, one result out; knows hardware, not Kafka."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from fedbus_executor.cache import DatasetCache
from fedbus_executor.checkpoint import CheckpointState, CheckpointStore, capture_rng, restore_rng
from fedbus_executor.crypto import key_from_env
from fedbus_executor.dataset import LoadedDataset, load_dataset
from fedbus_executor.devices import DeviceProbe, is_device_failure, select_device
from fedbus_executor.errors import CheckpointError
from fedbus_executor.models import get_model_entry
from fedbus_executor.plugins import validate_options
from fedbus_executor.progress import ProgressCallback, ProgressEvent, discard_progress
from fedbus_executor.task import (
    DataRef,
    LoRASettings,
    ModelRef,
    TrainingMetrics,
    TrainingResult,
    TrainingTask,
)
from fedbus_executor.training import (
    EpochStats,
    RunState,
    count_parameters,
    eval_layout,
    evaluate_module,
    load_weights,
    make_loader,
    make_optimizer,
    make_scheduler,
    resume_scheduler,
    returned_state,
    seed_everything,
    train_epoch,
)
from fedbus_executor.weights import StateDict, bytes_to_state_dict

__all__ = ["EvaluationResult", "TrainingExecutor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    """Loss and accuracy of some weights on a held-out dataset."""

    loss: float
    accuracy: float
    num_samples: int
    device: str


class TrainingExecutor:
    """Runs training tasks and evaluations on the best working device.

    Parameters
    ----------
    probe
        How devices are tested; the real torch probe unless a test passes a fake.
    datasets
        Where validated datasets are kept between runs (a long-lived trainer or aggregator
        passes one); without it every run reads and validates its Parquet file again.
    dp_generator
        For tests only: where a DP run's noise and sampling generator comes from. Left
        out, it is :func:`~fedbus_executor.privacy.secure_generator`, fresh and secret on
        every run.

    Notes
    -----
    Without DP a run is repeatable bit for bit on the same CPU: the data order, the
    initial weights and dropout follow from ``task.seed``. PyTorch's CPU kernels split
    their sums by thread, so the number of intra-op threads (``torch.set_num_threads``,
    ``OMP_NUM_THREADS``) must be the same too.
    """

    def __init__(
        self,
        *,
        probe: DeviceProbe | None = None,
        datasets: DatasetCache | None = None,
        dp_generator: Callable[[], torch.Generator] | None = None,
    ) -> None:
        self._probe = probe
        self._datasets = datasets
        self._dp_generator = dp_generator

    def train(
        self, task: TrainingTask, *, progress: ProgressCallback = discard_progress
    ) -> TrainingResult:
        """Train as ``task`` says; resume from its checkpoint directory when one exists.

        If the chosen accelerator fails during the run (out of memory, CUDA error) the
        run restarts on CPU and the result records the fallback.
        """
        choice = select_device(task.device, probe=self._probe)
        try:
            return self._run(task, choice.device, progress, choice.fallback_reason)
        except RuntimeError as exc:
            if choice.device.type == "cpu" or not is_device_failure(exc):
                raise
            logger.warning("training on %s failed (%s); retrying on cpu", choice.device, exc)
            return self._run(task, torch.device("cpu"), progress, f"{choice.device}: {exc}")

    def evaluate(
        self,
        *,
        model: ModelRef,
        weights: bytes | StateDict,
        data: DataRef,
        lora: LoRASettings | None = None,
        batch_size: int = 256,
        device: str = "auto",
    ) -> EvaluationResult:
        """Accuracy of ``weights`` (full, or adapters + head with ``lora``) on ``data``."""
        dev = select_device(device, probe=self._probe).device
        dataset = self._load(data)
        net, tensors = _build(model, dataset, lora)
        state = bytes_to_state_dict(weights) if isinstance(weights, bytes) else weights
        load_weights(net, state, partial=lora is not None)
        loader = make_loader(tensors, dataset, batch_size=batch_size, shuffle=False)
        layout = eval_layout(net, tensors)
        net = net.to(dev).to(memory_format=layout)
        loss, acc, n = evaluate_module(net, loader, device=dev, memory_format=layout)
        return EvaluationResult(loss=loss, accuracy=acc, num_samples=n, device=str(dev))

    def _run(
        self,
        task: TrainingTask,
        device: torch.device,
        progress: ProgressCallback,
        fallback: str | None,
    ) -> TrainingResult:
        started = time.perf_counter()
        seed_everything(task.seed)
        dataset = self._load(task.data)
        progress(
            ProgressEvent(
                "setup",
                f"loaded {len(dataset)} examples",
                {"samples": len(dataset), "device": str(device)},
            )
        )
        state = _setup(task, dataset, device, self._loader_generator(task))
        store = _checkpoint_store(task)
        first_epoch, stats = _resume(store, state, task)
        for epoch in range(first_epoch + 1, task.epochs + 1):
            stats = train_epoch(state, task, epoch=epoch, device=device, progress=progress)
            progress(
                ProgressEvent(
                    "epoch_end",
                    f"epoch {epoch}/{task.epochs} done",
                    {
                        "epoch": epoch,
                        "total": task.epochs,
                        "loss": stats.loss,
                        "accuracy": stats.accuracy,
                    },
                )
            )
            if store is not None:
                store.save(_snapshot(state, task, epoch, stats))
        result = _result(task, state, stats, device, time.perf_counter() - started, fallback)
        result = replace(result, num_samples=len(dataset), resumed_from_epoch=first_epoch or None)
        progress(
            ProgressEvent(
                "done", "training finished", {"loss": stats.loss, "accuracy": stats.accuracy}
            )
        )
        return result

    def _loader_generator(self, task: TrainingTask) -> torch.Generator:
        """The seeded data order; for DP, a secret one that also draws the noise."""
        if task.dp is None:
            return torch.Generator().manual_seed(task.seed)
        if self._dp_generator is not None:
            return self._dp_generator()
        from fedbus_executor.privacy import secure_generator  # opacus only when used

        return secure_generator()

    def _load(self, data: DataRef) -> LoadedDataset:
        spec = data.resolve_spec()
        if self._datasets is None:
            return load_dataset(data.path, spec)
        return self._datasets.load(data.path, spec)


def _build(
    ref: ModelRef, data: LoadedDataset, lora: LoRASettings | None
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    entry = get_model_entry(ref.name)
    options = validate_options(ref.name, ref.kwargs)
    tensors = entry.encode_inputs(data, **options.model_dump())
    model = entry.build(options, data.spec)
    if lora is not None:
        from fedbus_executor.lora import apply_lora  # peft is slow to import; only when used

        model = apply_lora(model, lora)
    return model, tensors


def _setup(
    task: TrainingTask, data: LoadedDataset, device: torch.device, generator: torch.Generator
) -> RunState:
    model, tensors = _build(task.model, data, task.lora)
    if task.dp is not None:
        from fedbus_executor.privacy import make_dp_compatible  # opacus only when used

        model = make_dp_compatible(model, fix=task.dp.fix_incompatible)
    if task.initial_weights is not None:
        load_weights(
            model, bytes_to_state_dict(task.initial_weights), partial=task.lora is not None
        )
    start = returned_state(model, trainable_only=task.lora is not None)
    model.to(device)
    optimizer = make_optimizer(task, model)
    loader = make_loader(
        tensors, data, batch_size=task.batch_size, shuffle=True, generator=generator
    )
    # On the plain optimizer: DP-SGD's wrapper steps it, and shares its parameter groups.
    scheduler = make_scheduler(task, optimizer, len(loader))
    state = RunState(model, model, optimizer, loader, generator, start, scheduler=scheduler)
    if task.dp is not None:
        _make_private(state, task)
    return state


def _make_private(state: RunState, task: TrainingTask) -> None:
    dp = task.dp
    if dp is None:
        return
    from opacus import PrivacyEngine

    from fedbus_executor.privacy import plan_noise

    steps_per_epoch = len(state.loader)
    plan = plan_noise(dp, sample_rate=1 / steps_per_epoch, steps=task.epochs * steps_per_epoch)
    engine = PrivacyEngine(accountant="rdp")
    # Opacus's ghost clipping (fast gradient clipping): its optimizer takes the clipped sum
    # from .grad. Book-keeping (bookkeeping.py) forms that sum in one backward pass; a model
    # it does not support (BookKeepingClipper.supports) keeps ghost clipping's two passes.
    module, optimizer, criterion, loader = engine.make_private(
        module=state.model,
        optimizer=state.optimizer,
        data_loader=state.loader,
        criterion=nn.CrossEntropyLoss(),
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,  # draws from the loader's generator: state.generator
        grad_sample_mode="ghost",
        noise_generator=state.generator,  # secret, never from the task's seed
    )
    state.module, state.optimizer, state.loader = module, optimizer, loader
    state.engine, state.plan, state.criterion = engine, plan, criterion
    from fedbus_executor.bookkeeping import BookKeepingClipper

    if BookKeepingClipper.supports(state.model):
        module.remove_hooks()  # the optimizer, sampler and accountant stay
        state.clipper = BookKeepingClipper(state.model, max_grad_norm=dp.max_grad_norm)


def _checkpoint_store(task: TrainingTask) -> CheckpointStore | None:
    cfg = task.checkpoint
    if cfg is None:
        return None
    key = key_from_env(cfg.key_env) if cfg.encrypt else None
    return CheckpointStore(cfg.directory, key=key, keep=cfg.keep)


def _snapshot(
    state: RunState, task: TrainingTask, epoch: int, stats: EpochStats
) -> CheckpointState:
    history = list(state.engine.accountant.history) if state.engine is not None else []
    return CheckpointState(
        epoch=epoch,
        fingerprint=task.fingerprint(),
        model={k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        optimizer=state.optimizer.state_dict(),
        rng=capture_rng(),
        loader_rng=state.generator.get_state(),
        accountant_history=history,
        extra={"loss": stats.loss, "accuracy": stats.accuracy, "steps": stats.steps},
    )


def _resume(
    store: CheckpointStore | None, state: RunState, task: TrainingTask
) -> tuple[int, EpochStats]:
    empty = EpochStats(float("nan"), float("nan"), 0)
    ckpt = store.load_latest() if store is not None else None
    if ckpt is None:
        return 0, empty
    if ckpt.fingerprint != task.fingerprint():
        raise CheckpointError(
            f"checkpoint in {task.checkpoint.directory if task.checkpoint else '?'} belongs "
            "to a different task; remove it or use another directory"
        )
    load_weights(state.model, ckpt.model, partial=False)
    state.optimizer.load_state_dict(ckpt.optimizer)
    resume_scheduler(state.scheduler, ckpt.epoch * len(state.loader))
    restore_rng(ckpt.rng)
    state.generator.set_state(ckpt.loader_rng)
    if state.engine is not None:
        state.engine.accountant.history = list(ckpt.accountant_history)
    logger.info("resumed from checkpoint after epoch %s", ckpt.epoch)
    extra: dict[str, Any] = ckpt.extra
    return ckpt.epoch, EpochStats(extra["loss"], extra["accuracy"], extra["steps"])


def _result(
    task: TrainingTask,
    state: RunState,
    stats: EpochStats,
    device: torch.device,
    duration: float,
    fallback: str | None,
) -> TrainingResult:
    weights = returned_state(state.model, trainable_only=task.lora is not None)
    delta = {
        k: v - state.start[k]
        for k, v in weights.items()
        if k in state.start and v.is_floating_point()
    }
    privacy = None
    if state.engine is not None and state.plan is not None and task.dp is not None:
        from fedbus_executor.privacy import privacy_report

        privacy = privacy_report(state.engine, task.dp, state.plan)
    trainable, total = count_parameters(state.model)
    metrics = TrainingMetrics(
        loss=stats.loss,
        accuracy=stats.accuracy,
        duration_s=duration,
        device=str(device),
        epochs=task.epochs,
        steps=stats.steps * task.epochs,
    )
    return TrainingResult(
        weights=weights,
        delta=delta,
        num_samples=0,
        metrics=metrics,
        privacy=privacy,
        trainable_parameters=trainable,
        total_parameters=total,
        device_fallback_reason=fallback,
    )
