"""Start-up validation of the datasets and the settings, and the submitted-rounds file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbus.events import ModelRef, UpdateSubmitted
from fedbus_trainer import SubmittedLog, parse_data_args
from fedbus_trainer.datasets import DataArgumentError
from fedbus_trainer.main import startup


def test_startup_loads_every_dataset_with_its_size(
    client_file: Path, digits_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDBUS_CONSUMER_GROUP", raising=False)
    other = digits_root / "clients" / "client-001.parquet"
    settings, datasets, device = startup(
        [
            "--client-id",
            "c7",
            "--data",
            f"a={client_file}",
            "--data",
            f"b={other}",
            "--device",
            "cpu",
        ]
    )
    assert settings.client_id == "c7"
    assert settings.group_id() == "trainer-c7"
    assert device == "cpu"
    assert sorted(datasets) == ["a", "b"]
    assert all(300 < d.num_samples < 400 for d in datasets.values())
    assert datasets["a"].spec.feature_shape == (1, 8, 8)


def test_env_fallbacks_and_the_test_consumer_group(
    client_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDBUS_CLIENT_ID", "env-client")
    monkeypatch.setenv("FEDBUS_DATA", f"digits={client_file}")
    monkeypatch.setenv("FEDBUS_DEVICE", "cpu")
    monkeypatch.setenv("FEDBUS_CONSUMER_GROUP", "test-group-1")
    settings, datasets, _ = startup([])
    assert settings.client_id == "env-client"
    assert list(datasets) == ["digits"]
    assert settings.group_id() == "test-group-1"


@pytest.mark.parametrize("kind", ["missing", "no_manifest", "not_parquet"])
def test_an_invalid_dataset_refuses_start_naming_the_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad" / "clients" / "client-000.parquet"
    if kind != "missing":
        bad.parent.mkdir(parents=True)
        bad.write_bytes(b"not parquet at all")
    if kind == "not_parquet":
        (tmp_path / "bad" / "manifest.json").write_text(
            '{"spec": {"name": "digits", "feature_shape": [1, 8, 8], "classes": ["0", "1"]}}'
        )
    with pytest.raises(SystemExit) as exit_info:
        startup(["--client-id", "c1", "--data", f"digits={bad}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err
    assert err.startswith("fedbus-trainer: error:")
    assert len(err.splitlines()) == 1


def test_no_client_id_or_no_data_refuses_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FEDBUS_CLIENT_ID", raising=False)
    monkeypatch.delenv("FEDBUS_DATA", raising=False)
    with pytest.raises(SystemExit):
        startup([])
    assert "--client-id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        startup(["--client-id", "c1"])
    assert "--data" in capsys.readouterr().err


def test_data_arguments_are_name_equals_path() -> None:
    assert parse_data_args(["a=/x.parquet", "b=/y.parquet,c=/z.parquet"]) == {
        "a": Path("/x.parquet"),
        "b": Path("/y.parquet"),
        "c": Path("/z.parquet"),
    }
    for bad in (["nopath"], ["=x"], ["a="], ["a=/x", "a=/y"]):
        with pytest.raises(DataArgumentError):
            parse_data_args(bad)


def _update(job: str, rnd: int) -> UpdateSubmitted:
    ref = ModelRef(object_key="k", size_bytes=1, sha256="0" * 64)
    return UpdateSubmitted.create(
        source="trainer", job_id=job, round=rnd, client_id="c1", update=ref, num_samples=3
    )


def test_submitted_log_survives_a_restart_and_keys_by_attempt(tmp_path: Path) -> None:
    path = tmp_path / "trainer-c1" / "submitted.json"
    log = SubmittedLog(path)
    update = _update("j", 2)
    log.record("attempt-a", update)
    reread = SubmittedLog(path)
    assert reread.get("j", 2, "attempt-a") == update
    assert reread.get("j", 2, "attempt-b") is None
    assert reread.get("j", 3, "attempt-a") is None


def test_submitted_log_keeps_the_most_recent_and_shrugs_off_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "submitted.json"
    log = SubmittedLog(path, keep=2)
    for rnd in (1, 2, 3):
        log.record(f"e{rnd}", _update("j", rnd))
    assert SubmittedLog(path).get("j", 1, "e1") is None
    assert SubmittedLog(path).get("j", 3, "e3") is not None
    path.write_text("{torn")
    assert SubmittedLog(path).get("j", 3, "e3") is None


def test_a_dataset_folder_means_this_trainers_own_client_file(
    digits_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDBUS_CONSUMER_GROUP", raising=False)
    from fedbus.datalayout import client_file

    _, datasets, _ = startup(["--client-id", "client-001", "--data", f"digits={digits_root}"])
    assert datasets["digits"].path == client_file(digits_root, "client-001")

    with pytest.raises(SystemExit) as exit_:
        startup(["--client-id", "hospital-z", "--data", f"digits={digits_root}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{digits_root}/clients/hospital-z.parquet: no file for client 'hospital-z'" in err
