"""docs/events.md is what the schemas generate today."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbus.events import event_types
from fedbus.events.docgen import default_output, main, render

pytestmark = pytest.mark.contract


def test_committed_page_is_fresh() -> None:
    committed = default_output().read_text(encoding="utf-8")

    assert committed == render(), "docs/events.md is stale: python -m fedbus.events.docgen"


def test_check_mode_fails_on_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "events.md"
    stale.write_text(render() + "\nhand edit\n", encoding="utf-8")

    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0


def test_page_documents_every_event_and_the_outside_publisher() -> None:
    page = render()

    for event_type in event_types():
        assert f"### `{event_type}`" in page
    outside = page.split("## Publishing `job.requested`")[1].split("## Events")[0]
    # Consumers require signatures: the example signs with the tenant's key, and no unsigned
    # way (a console producer) is shown.
    assert "fedbus-signature" in outside
    assert "headers=headers" in outside
    assert "kafka-console-producer.sh" not in outside
