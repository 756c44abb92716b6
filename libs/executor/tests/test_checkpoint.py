"""Checkpoints: encryption at rest, refusal of tampering / wrong keys, resume after kill -9."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedbus.storage import AesGcmCipher, DecryptionError
from fedbus_executor import CheckpointError, CheckpointState, CheckpointStore
from fedbus_executor.checkpoint import capture_rng

KEY = bytes(range(32))


def _state(epoch: int = 1) -> CheckpointState:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    opt.zero_grad()
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    return CheckpointState(
        epoch=epoch,
        fingerprint="f",
        model={"w": torch.arange(4.0)},
        optimizer=opt.state_dict(),
        rng=capture_rng(),
        loader_rng=torch.Generator().manual_seed(1).get_state(),
        accountant_history=[(1.0, 0.01, 10)],
        extra={"loss": 0.5},
    )


def test_encrypted_checkpoint_round_trips(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, key=KEY)
    path = store.save(_state())

    loaded = store.load_latest()

    assert b"model/w" not in path.read_bytes()  # not readable at rest
    assert loaded is not None
    assert torch.equal(loaded.model["w"], torch.arange(4.0))
    assert loaded.accountant_history == [(1.0, 0.01, 10)]
    assert torch.equal(
        loaded.optimizer["state"][0]["exp_avg"], _state().optimizer["state"][0]["exp_avg"]
    )


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    CheckpointStore(tmp_path, key=KEY).save(_state())
    with pytest.raises(CheckpointError, match="wrong key"):
        CheckpointStore(tmp_path, key=bytes(32)).load_latest()
    with pytest.raises(CheckpointError, match="no key"):
        CheckpointStore(tmp_path).load_latest()


def test_tampered_file_is_refused_even_with_pointer_updated(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, key=KEY)
    path = store.save(_state())
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="modified"):
        store.load_latest()
    pointer = json.loads((tmp_path / "latest.json").read_text())
    pointer["sha256"] = hashlib.sha256(bytes(blob)).hexdigest()
    (tmp_path / "latest.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="tampered"):
        store.load_latest()


def test_decrypt_refuses_plain_data() -> None:
    cipher = AesGcmCipher(KEY)
    assert cipher.decrypt(cipher.encrypt(b"abc", associated=b"f"), associated=b"f") == b"abc"
    with pytest.raises(DecryptionError, match="not an encrypted"):
        cipher.decrypt(b"plain", associated=b"f")


def test_a_checkpoint_is_written_in_the_one_envelope_bound_to_its_name(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, key=KEY)
    older, newer = store.save(_state(1)), store.save(_state(2))

    assert newer.read_bytes().startswith(b"FBE2")
    # An older epoch's file put in the newer's place (pointer hash updated) is refused.
    newer.write_bytes(older.read_bytes())
    pointer = json.loads((tmp_path / "latest.json").read_text())
    pointer["sha256"] = hashlib.sha256(older.read_bytes()).hexdigest()
    (tmp_path / "latest.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="authentication failed"):
        store.load_latest()


def test_a_checkpoint_in_the_legacy_fbenc1_envelope_still_resumes(tmp_path: Path) -> None:
    # Written as fedbus_executor.crypto.encrypt did before the one envelope:
    # b"FBENC1" | 12-byte nonce | AES-GCM(plaintext) with b"FBENC1" as associated data.
    plain = CheckpointStore(tmp_path / "plain").save(_state(3)).read_bytes()
    nonce, name = os.urandom(12), "epoch-0003.safetensors.enc"
    blob = b"FBENC1" + nonce + AESGCM(KEY).encrypt(nonce, plain, b"FBENC1")
    (tmp_path / name).write_bytes(blob)
    pointer = {"file": name, "sha256": hashlib.sha256(blob).hexdigest(), "epoch": 3,
               "encrypted": True}  # fmt: skip
    (tmp_path / "latest.json").write_text(json.dumps(pointer))

    loaded = CheckpointStore(tmp_path, key=KEY).load_latest()

    assert loaded is not None
    assert loaded.epoch == 3
    assert torch.equal(loaded.model["w"], torch.arange(4.0))
    with pytest.raises(CheckpointError, match="wrong key"):
        CheckpointStore(tmp_path, key=bytes(32)).load_latest()


RUNNER = Path(__file__).with_name("resume_runner.py")


def _run(args: list[str], env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, str(RUNNER), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _run_in_process(data: str, ckpt: str, env: dict[str, str]) -> dict[str, object]:
    """The uninterrupted reference, in this process (saves one interpreter start)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("resume_runner", RUNNER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child processes: same reduction order
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FEDBUS_CHECKPOINT_KEY", env["FEDBUS_CHECKPOINT_KEY"])
            return dict(module.run(data, ckpt))
    finally:
        torch.set_num_threads(threads)


def test_killed_run_resumes_from_checkpoint_with_same_result(
    digits_root: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "FEDBUS_CHECKPOINT_KEY": base64.b64encode(KEY).decode()}
    data = str(digits_root / "train.parquet")
    reference = _run_in_process(data, str(tmp_path / "ref"), env)

    marker = tmp_path / "stalled"
    ckpt = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(RUNNER), data, str(ckpt), str(marker)], env=env)
    deadline = time.monotonic() + 240
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), "runner never reached epoch 2"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    resumed = _run([data, str(ckpt)], env)

    assert resumed["resumed_from_epoch"] == 1
    assert reference["resumed_from_epoch"] is None
    assert resumed["sha256"] == reference["sha256"]
    assert resumed["loss"] == reference["loss"]
    assert resumed["epsilon"] == reference["epsilon"]
