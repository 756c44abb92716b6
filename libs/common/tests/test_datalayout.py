"""The one naming convention for client data: clients/<client id>.parquet."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbus.datalayout import client_file, client_ids, client_relpath


def test_a_client_file_is_named_after_the_trainer_that_reads_it() -> None:
    assert client_relpath("hospital-a") == "clients/hospital-a.parquet"
    assert client_file("/data/mnist", "fedbus-trainer-cpu-0") == Path(
        "/data/mnist/clients/fedbus-trainer-cpu-0.parquet"
    )


def test_numbered_names() -> None:
    assert client_ids("client-{i:03d}", 3) == ["client-000", "client-001", "client-002"]
    assert client_ids("fedbus-trainer-cpu-{i}", 2) == [
        "fedbus-trainer-cpu-0",
        "fedbus-trainer-cpu-1",
    ]
    assert client_ids("hospital-a", 1) == ["hospital-a"]


@pytest.mark.parametrize(
    ("template", "count", "words"),
    [
        ("site", 2, "has no {i}"),
        ("site-{n}", 2, "only {i} may be used"),
        ("site {i}", 1, "client id 'site 0'"),
        ("dlq", 1, "reserved"),
        ("site-{i", 1, "client names 'site-{i'"),
        ("../{i}", 1, "client id '../0'"),
    ],
)
def test_names_that_cannot_be_client_ids_are_refused(template: str, count: int, words: str) -> None:
    with pytest.raises(ValueError) as err:
        client_ids(template, count)
    assert words in str(err.value)
