"""``fedbus jobs submit`` checks a spec file as the gateway does, and sends it as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedbus_cli.commands._gateway import GatewayError
from fedbus_cli.commands.jobs import load_spec

REPO = Path(__file__).resolve().parents[3]


def test_a_misspelt_field_is_refused_naming_it_and_the_close_name(tmp_path: Path) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text("mode: federated\nmodel: mlp\ndataset: digits\nrounds: 3\nround: 5\n")

    with pytest.raises(GatewayError) as refused:
        load_spec(spec)

    assert "spec.round: unknown field 'round'; did you mean 'rounds'?" in str(refused.value)


def test_a_value_is_not_coerced(tmp_path: Path) -> None:
    spec = tmp_path / "quoted.yaml"
    spec.write_text("mode: federated\nmodel: mlp\ndataset: digits\nrounds: '3'\n")

    with pytest.raises(GatewayError, match=r"spec\.rounds"):
        load_spec(spec)


@pytest.mark.parametrize("name", ["federated-digits.yaml", "demo-mnist-local-dp.yaml"])
def test_an_example_is_sent_as_written_with_its_key_apart(name: str, tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "examples" / name).read_text())
    spec = tmp_path / name
    spec.write_text(yaml.safe_dump({**raw, "idempotency_key": "nightly"}))

    body, key = load_spec(spec)

    assert (body, key) == (raw, "nightly")
