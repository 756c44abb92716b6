"""Job YAML for centralized runs: a TrainingTask plus a test set and an output folder.

Relative paths in the file are taken relative to the current directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Job", "JobFileError", "load_job"]


class JobFileError(Exception):
    """The job file is missing, not YAML, or not a valid task."""


@dataclass(frozen=True)
class Job:
    """A parsed job file."""

    task: Any
    test: Any
    output: Path


def load_job(path: Path) -> Job:
    """Read ``path``: keys of ``TrainingTask`` plus optional ``test`` and ``output``.

    Raises
    ------
    JobFileError
        With the file name and the problem.
    """
    import yaml
    from pydantic import ValidationError

    from fedbus_executor import DataRef, TrainingTask

    try:
        raw: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise JobFileError(f"{path}: cannot read job file: {exc}") from exc
    if not isinstance(raw, dict):
        raise JobFileError(f"{path}: a job file is a YAML mapping")
    body: dict[str, Any] = dict(raw)
    body.pop("name", None)
    test = body.pop("test", None)
    output = Path(str(body.pop("output", "runs/" + path.stem)))
    try:
        task = TrainingTask.model_validate(body)
        test_ref = None if test is None else DataRef.model_validate(test)
    except ValidationError as exc:
        raise JobFileError(f"{path}: invalid job: {exc}") from exc
    return Job(task=task, test=test_ref, output=output)
