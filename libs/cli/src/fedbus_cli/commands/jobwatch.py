"""What ``fedbus jobs watch`` shows: rounds done, clients reported, latest accuracy."""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["JobWatch"]

ENDED = frozenset({"rejected", "completed", "failed", "cancelled", "budget_exhausted"})
REPORTED_PHASES = frozenset({"uploading", "completed"})


class JobWatch:
    """Folds a job's SSE events into two tqdm bars and a final summary."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.status = "unknown"
        self.rounds_total: int | None = None
        self.rounds_done = 0
        self.round: int | None = None
        self.reported: set[str] = set()
        self.metrics: dict[str, float] = {}
        self.reasons: list[str] = []
        self._rounds_bar: Any = None
        self._clients_bar: Any = None

    @property
    def ended(self) -> bool:
        """True once the job can change no more."""
        return self.status in ENDED

    def apply(self, event: str, data: dict[str, Any]) -> None:
        """Take one event (``status``, ``round.started``, ``progress``, ``job.*``, ...)."""
        handler = getattr(self, "_on_" + event.replace(".", "_"), None)
        if handler is not None:
            handler(data)
        self._draw()

    def _on_status(self, view: dict[str, Any]) -> None:
        self.status = view["status"]
        self.rounds_total = (view.get("spec") or {}).get("rounds")
        self.rounds_done = view.get("rounds_completed", 0)
        self.round = view.get("current_round")
        self.metrics = dict(view.get("metrics") or {})
        self.reasons = [f"{r['code']}: {r['message']}" for r in view.get("reasons") or []]

    def _on_job_accepted(self, event: dict[str, Any]) -> None:
        self.status = "accepted"
        self.rounds_total = event["spec"]["rounds"]

    def _on_round_started(self, event: dict[str, Any]) -> None:
        self.status, self.round, self.reported = "running", event["round"], set()
        self._bar("clients", len(event["selected_clients"]), f"round {event['round']} clients")

    def _on_progress(self, event: dict[str, Any]) -> None:
        same_round = event.get("round") == self.round
        if same_round and event.get("client_id") and event.get("phase") in REPORTED_PHASES:
            self.reported.add(event["client_id"])

    def _on_round_completed(self, event: dict[str, Any]) -> None:
        self.rounds_done = max(self.rounds_done, event["round"])
        self.metrics = dict(event.get("metrics") or {})
        if event["round"] == self.round:
            self.reported |= set(event["participants"])

    def _on_job_completed(self, event: dict[str, Any]) -> None:
        self.status = event["status"]
        self.rounds_done = max(self.rounds_done, event["rounds_completed"])
        self.metrics = dict(event.get("metrics") or self.metrics)

    def _on_job_failed(self, event: dict[str, Any]) -> None:
        self.status = "failed"
        self.reasons = [f"{event['code']}: {event['message']}"]

    def _on_job_rejected(self, event: dict[str, Any]) -> None:
        self.status = "rejected"
        self.reasons = [
            f"{r['code']} ({r.get('field') or '-'}): {r['message']}" for r in event["reasons"]
        ]

    def _bar(self, which: str, total: int | None, desc: str) -> Any:
        from tqdm import tqdm  # type: ignore[import-untyped]

        attr = f"_{which}_bar"
        old = getattr(self, attr)
        if old is not None and (old.total != total or old.desc != desc):
            old.close()
            old = None
        if old is None:
            old = tqdm(total=total, desc=desc, unit=which, leave=True)
            setattr(self, attr, old)
        return old

    def _draw(self) -> None:
        if self.rounds_total is not None:
            bar = self._bar("rounds", self.rounds_total, "rounds")
            bar.n = self.rounds_done
            if "accuracy" in self.metrics:
                bar.set_postfix(accuracy=f"{self.metrics['accuracy']:.4f}")
            bar.refresh()
        if self._clients_bar is not None:
            self._clients_bar.n = len(self.reported)
            self._clients_bar.refresh()

    def summary(self) -> str:
        """The final status line, with metrics and reasons."""
        total = self.rounds_total if self.rounds_total is not None else "?"
        parts = [f"job {self.job_id}: {self.status}", f"rounds {self.rounds_done}/{total}"]
        parts += [f"{k}={v:.4f}" for k, v in sorted(self.metrics.items())]
        text = ", ".join(parts)
        return "\n".join([text, *(f"  {reason}" for reason in self.reasons)])

    def close(self) -> None:
        """Close the bars."""
        for bar in (self._clients_bar, self._rounds_bar):
            if bar is not None:
                bar.close()

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
