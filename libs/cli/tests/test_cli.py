"""The ``fedbus`` CLI: data prepare, centralized train, a light ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedbus_cli import main


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom fedbus_cli import build_parser\nbuild_parser().format_help()\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_prepare_digits_then_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "data",
                "prepare",
                "--dataset",
                "digits",
                "--clients",
                "3",
                "--partition",
                "dirichlet",
                "--alpha",
                "0.3",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for i in range(3):
        assert f"data/digits/clients/client-00{i}.parquet: n=" in printed
    manifest = json.loads(Path("data/digits/manifest.json").read_text())
    assert len(list(Path("data/digits/clients").glob("client-*.parquet"))) == 3
    assert manifest["partition"] == "dirichlet"

    config = tmp_path / "job.yaml"
    config.write_text(
        "name: tiny\nmodel: {name: mlp, kwargs: {hidden: [32]}}\n"
        "data: {path: data/digits/train.parquet}\ntest: {path: data/digits/test.parquet}\n"
        "epochs: 2\nbatch_size: 64\nlearning_rate: 0.1\nmomentum: 0.9\ndevice: cpu\n"
        "dp: {noise_multiplier: 0.8}\noutput: runs/tiny\n"
    )
    assert main(["train", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "model written to runs/tiny/model.safetensors" in printed
    metrics = json.loads(Path("runs/tiny/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.3  # chance is 0.1
    assert metrics["epsilon"] > 0
    assert Path("runs/tiny/model.safetensors").stat().st_size > 0


def test_train_reports_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model: {name: mlp}\ndata: {path: nowhere.parquet}\nepochs: 0\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "epochs" in capsys.readouterr().err


def test_train_reports_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "job.yaml"
    spec = "{name: x, feature_shape: [4], classes: [a, b]}"
    config.write_text(
        f"model: {{name: mlp}}\ndata: {{path: {tmp_path}/no.parquet, spec: {spec}}}\n"
    )
    assert main(["train", "--config", str(config)]) == 2
    assert "no.parquet: file does not exist" in capsys.readouterr().err
