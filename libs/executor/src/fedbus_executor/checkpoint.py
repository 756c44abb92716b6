"""Per-epoch checkpoints in safetensors: weights, optimizer state, RNG states, accountant.

A checkpoint is one safetensors file (optionally in fedbus's AES-GCM envelope,
:class:`fedbus.storage.AesGcmCipher`, with the file name as associated data) plus ``latest.json``
naming it with its SHA-256; both are written atomically, the pointer last, so a process
killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The module, not the fedbus.storage package: the S3 adapter's boto3 is not needed here.
from fedbus.storage.crypto import AesGcmCipher, DecryptionError
from fedbus_executor.errors import CheckpointError
from fedbus_executor.weights import StateDict, bytes_to_state_dict, sha256_hex, state_dict_to_bytes

__all__ = ["CheckpointState", "CheckpointStore", "capture_rng", "restore_rng"]

logger = logging.getLogger(__name__)

POINTER = "latest.json"


@dataclass
class CheckpointState:
    """What a run needs to carry on after its last completed epoch."""

    epoch: int
    fingerprint: str
    model: StateDict
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    loader_rng: torch.Tensor
    accountant_history: list[tuple[float, float, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    """Global RNG states of torch, numpy and ``random``."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of ``capture_rng``."""
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


class CheckpointStore:
    """Writes and reads the checkpoints of one run in ``directory``.

    Parameters
    ----------
    directory
        Where files go (created if missing).
    key
        AES key (16, 24 or 32 bytes); when given, files are encrypted and only this key
        reads them.
    keep
        How many checkpoint files to keep.
    """

    def __init__(self, directory: str | Path, *, key: bytes | None = None, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.key = key
        self.keep = keep
        self._cipher = AesGcmCipher(key) if key is not None else None

    def save(self, state: CheckpointState) -> Path:
        """Write ``state`` and point ``latest.json`` at it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = _encode(state)
        suffix = ".safetensors.enc" if self._cipher is not None else ".safetensors"
        path = self.directory / f"epoch-{state.epoch:04d}{suffix}"
        if self._cipher is not None:
            # The name is authenticated: an older epoch's file renamed to this one is refused.
            data = self._cipher.encrypt(data, associated=path.name.encode())
        _atomic_write(path, data)
        pointer = {
            "file": path.name,
            "sha256": sha256_hex(data),
            "epoch": state.epoch,
            "encrypted": self.key is not None,
        }
        _atomic_write(self.directory / POINTER, json.dumps(pointer).encode())
        self._prune(path)
        logger.info("checkpoint for epoch %s written to %s", state.epoch, path)
        return path

    def load_latest(self) -> CheckpointState | None:
        """The newest checkpoint, or ``None`` when there is none.

        Raises
        ------
        CheckpointError
            When the file is missing, modified, or encrypted with another key.
        """
        pointer_path = self.directory / POINTER
        if not pointer_path.is_file():
            return None
        pointer = json.loads(pointer_path.read_text())
        path = self.directory / pointer["file"]
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} named by {pointer_path} is missing")
        data = path.read_bytes()
        if sha256_hex(data) != pointer["sha256"]:
            raise CheckpointError(f"checkpoint {path} was modified: SHA-256 does not match")
        return _decode(self._plaintext(path, data, encrypted=bool(pointer["encrypted"])))

    def _plaintext(self, path: Path, data: bytes, *, encrypted: bool) -> bytes:
        if encrypted and self.key is None:
            raise CheckpointError(f"checkpoint {path} is encrypted and no key was given")
        if not encrypted and self.key is not None:
            raise CheckpointError(f"checkpoint {path} is not encrypted but encryption is required")
        if self._cipher is None:
            return data
        try:
            return self._cipher.decrypt(data, associated=path.name.encode())
        except DecryptionError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None

    def _prune(self, current: Path) -> None:
        files = sorted(p for p in self.directory.glob("epoch-*.safetensors*") if p != current)
        for old in files[: max(0, len(files) - (self.keep - 1))]:
            old.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _encode(state: CheckpointState) -> bytes:
    tensors = {f"model/{k}": v for k, v in state.model.items()}
    optim_meta: dict[str, Any] = {"param_groups": state.optimizer["param_groups"], "state": {}}
    for idx, slots in state.optimizer["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value
            else:
                optim_meta["state"].setdefault(str(idx), {})[key] = value
    np_state = state.rng["numpy"]
    tensors["rng/torch"] = state.rng["torch"]
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    tensors["rng/loader"] = state.loader_rng
    meta = {
        "epoch": state.epoch,
        "fingerprint": state.fingerprint,
        "optimizer": optim_meta,
        "numpy": [np_state[0], *(float(x) for x in np_state[2:])],
        "python": [state.rng["python"][0], list(state.rng["python"][1]), state.rng["python"][2]],
        "accountant": state.accountant_history,
        "extra": state.extra,
    }
    return state_dict_to_bytes(tensors, metadata={"fedbus": json.dumps(meta)})


def _decode(data: bytes) -> CheckpointState:
    tensors = bytes_to_state_dict(data)
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["fedbus"])
    optim = {"param_groups": meta["optimizer"]["param_groups"], "state": {}}
    for idx, scalars in meta["optimizer"]["state"].items():
        optim["state"].setdefault(int(idx), {}).update(scalars)
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, idx, key = name.split("/", 2)
            optim["state"].setdefault(int(idx), {})[key] = value
    np_name, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["rng/numpy"].numpy().astype(np.uint32)
    py = meta["python"]
    rng = {
        "torch": tensors["rng/torch"],
        "numpy": (np_name, keys, int(pos), int(has_gauss), cached),
        "python": (py[0], tuple(py[1]), py[2]),
    }
    model = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    history = [(float(a), float(b), int(c)) for a, b, c in meta["accountant"]]
    return CheckpointState(
        meta["epoch"],
        meta["fingerprint"],
        model,
        optim,
        rng,
        tensors["rng/loader"],
        history,
        meta["extra"],
    )
