"""A tqdm progress bar fed by executor progress events."""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["TqdmProgress"]


class TqdmProgress:
    """Callable progress sink: one bar per epoch, loss in the postfix."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._epoch: object = None

    def __call__(self, event: Any) -> None:
        """Update the bar from one ``ProgressEvent``."""
        from tqdm import tqdm  # type: ignore[import-untyped]

        details = event.details
        if event.phase != "train":
            return
        if details["epoch"] != self._epoch:
            self.close()
            self._epoch = details["epoch"]
            self._bar = tqdm(
                total=int(details["total"]), desc=f"epoch {details['epoch']}", unit="step"
            )
        self._bar.update(int(details["step"]) - self._bar.n)
        self._bar.set_postfix(loss=f"{float(details['loss']):.4f}")

    def close(self) -> None:
        """Close the current bar, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
