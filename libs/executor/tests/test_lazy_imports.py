"""Heavy optional libraries load only for the tasks that need them.

transformers (MiniLM), peft (LoRA) and opacus (DP-SGD) cost hundreds of MB per process;
pandas comes in through pyarrow.dataset. A trainer of a plain CNN task holds none of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

OPTIONAL = ["transformers", "peft", "opacus", "pandas"]

CNN_TASK = """
import json, sys
import fedbus_executor
imported = {{"import": [m for m in {optional!r} if m in sys.modules]}}
from fedbus_executor import DataRef, ModelRef, TrainingExecutor, TrainingTask
data = DataRef(path={data!r})
task = TrainingTask(model=ModelRef(name="cnn"), data=data, epochs=1, device="cpu")
result = TrainingExecutor().train(task)
TrainingExecutor().evaluate(model=task.model, weights=result.weights, data=data, device="cpu")
imported["cnn"] = [m for m in {optional!r} if m in sys.modules]
from fedbus_executor import DPSettings
TrainingExecutor().train(task.model_copy(update={{"dp": DPSettings(noise_multiplier=1.0)}}))
imported["dp"] = [m for m in {optional!r} if m in sys.modules]
print(json.dumps(imported))
"""


def _run(code: str) -> dict[str, list[object]]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: dict[str, list[object]] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.slow
def test_a_plain_cnn_task_imports_no_optional_library(digits_root: Path) -> None:
    data = str(digits_root / "clients" / "client-000.parquet")

    loaded = _run(CNN_TASK.format(optional=OPTIONAL, data=data))

    assert loaded["import"] == []
    assert loaded["cnn"] == []
    assert "opacus" in loaded["dp"]  # the check does see a library a task imports


def test_warm_up_loads_what_the_first_optimizer_step_would() -> None:
    code = (
        "import json, sys\n"
        "import fedbus_executor\n"
        "before = 'torch._dynamo' in sys.modules\n"
        "fedbus_executor.warm_up()\n"
        "print(json.dumps({'before': [before], 'after': ['torch._dynamo' in sys.modules]}))\n"
    )
    loaded = _run(code)
    assert loaded == {"before": [False], "after": [True]}
