"""``fedbus models predict``: the file's rows reach the gateway, in chunks, and are printed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from fedbus_cli import main
from fedbus_cli.commands import _gateway

PRIVACY = {"mode": "central_dp", "epsilon": 2.5, "delta": 1e-5}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[list[list[float]]]:
    """The ``inputs`` of each request to a fake gateway that labels a row by its first value."""
    bodies: list[list[list[float]]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/models/cnn-digits/versions/3:predict":
            return httpx.Response(404, json={"detail": "no version 9 of 'cnn-digits'"})
        rows = json.loads(request.content)["inputs"]
        if len(rows[0]) != 4:
            return httpx.Response(422, json={"detail": "inputs: expected rows of shape [4]"})
        bodies.append(rows)
        probabilities = [[0.25, 0.75] if r[0] else [0.9, 0.1] for r in rows]
        labels = ["b" if r[0] else "a" for r in rows]
        return httpx.Response(
            200,
            json={
                "model": "cnn-digits",
                "version": 3,
                "classes": ["a", "b"],
                "labels": labels,
                "probabilities": probabilities,
                "privacy": PRIVACY,
            },
        )

    monkeypatch.setattr(_gateway, "TRANSPORT", httpx.MockTransport(handle))
    monkeypatch.setenv("FEDBUS_GATEWAY_URL", "http://gw.test")
    monkeypatch.setenv("FEDBUS_API_KEY", "k-1")
    return bodies


ROWS = [[0.0, 1.0, 2.0, 3.0], [1.0, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]


def test_a_csv_with_a_header_is_sent_in_chunks_and_labels_are_printed(
    sent: list[list[list[float]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("p0,p1,p2,p3\n" + "\n".join(",".join(str(v) for v in r) for r in ROWS))

    code = main(["models", "predict", "cnn-digits", "3", "--input", str(path), "--chunk", "2"])

    out = capsys.readouterr().out
    assert code == 0
    assert sent == [ROWS[:2], ROWS[2:]]
    assert [line.split()[1] for line in out.splitlines()[1:4]] == ["a", "b", "a"]
    assert "privacy: central_dp, epsilon 2.5, delta 1e-05" in out


def test_npy_and_json_files_send_the_same_rows(
    sent: list[list[list[float]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "rows.npy", np.array(ROWS, dtype=np.float32))
    (tmp_path / "rows.json").write_text(json.dumps({"inputs": ROWS}))

    npy = main(["models", "predict", "cnn-digits", "3", "-i", str(tmp_path / "rows.npy")])
    as_json = main(
        ["models", "predict", "cnn-digits", "3", "-i", str(tmp_path / "rows.json"), "--json"]
    )

    assert (npy, as_json) == (0, 0)
    assert sent == [ROWS, ROWS]
    printed = json.loads(capsys.readouterr().out.split("privacy: central_dp")[-1].split("\n", 1)[1])
    assert printed["labels"] == ["a", "b", "a"]
    assert printed["privacy"] == PRIVACY


def test_a_csv_cell_that_is_not_a_number_names_its_line_and_column(
    sent: list[list[list[float]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("1,2,3,4\n5,6,x7,8\n")

    code = main(["models", "predict", "cnn-digits", "3", "-i", str(path)])

    assert code == 2
    assert f"{path}: line 2, column 3: 'x7' is not a number" in capsys.readouterr().err
    assert sent == []


def test_the_gateways_refusal_is_printed(
    sent: list[list[list[float]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([[1, 2, 3]]))

    code = main(["models", "predict", "cnn-digits", "3", "-i", str(path)])

    assert code == 2
    assert "HTTP 422: inputs: expected rows of shape [4]" in capsys.readouterr().err


def test_an_unknown_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1")

    code = main(["models", "predict", "cnn-digits", "3", "-i", str(path), "--gateway", "http://x"])

    assert code == 2
    assert "unknown input format '.parquet'" in capsys.readouterr().err


def test_predict_waits_longer_than_other_calls_for_a_version_being_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A version's first request waits while the gateway loads it: predict waits 120 s by
    # default, other commands 30 s; --timeout sets either.
    from fedbus_cli.main import build_parser

    monkeypatch.setenv("FEDBUS_GATEWAY_URL", "http://gw.test")
    parser = build_parser(with_executor=False)
    predict = parser.parse_args(["models", "predict", "cnn-digits", "3", "-i", "rows.csv"])
    listing = parser.parse_args(["jobs", "list"])
    quick = parser.parse_args(["models", "predict", "m", "1", "-i", "f", "--timeout", "5"])

    timeouts = [_gateway.client_from_args(a)._http.timeout.read for a in (predict, listing, quick)]
    assert timeouts == [120.0, 30.0, 5.0]
