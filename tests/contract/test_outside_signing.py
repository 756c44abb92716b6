"""docs/events.md's signing recipe for outside producers is the signature fedbus verifies.

An upstream system in any language follows the page's "Signing a record" steps; the page's
Python block implements them with ``cryptography`` alone. Here that block's ``signed``
function signs a request and a consumer's key directory (fedbus's verifier) accepts it, and
refuses it once a byte, the topic or the key changes. No broker: the integration test
``test_upstream_intake`` publishes the same block to the real one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedbus.bus.codec import encode_event
from fedbus.bus.signing import (
    KEY_TOPIC,
    EventSignatureError,
    KeyDirectory,
    Signer,
    generate_key,
    key_record,
    write_private_key,
)
from fedbus.events import load_topics
from fedbus.events.docgen import render

pytestmark = pytest.mark.contract

TOPIC = "upstream.job.requested.acme"
KEY = b"job-7f3c2a"
VALUE = b'{"job_id": "job-7f3c2a", "tenant": "acme"}'
CT = b"application/json"


def documented_signer() -> Callable[..., list[tuple[str, bytes]]]:
    """The ``signed`` function of the page's outside-publisher block (its code, as shown)."""
    page = render()
    block = page.split("With a plain aiokafka producer")[1].split("```python\n")[1]
    block = block.split("```")[0].replace("asyncio.run(main())", "")
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/events.md", "exec"), namespace)  # the page's own code
    signer: Callable[..., list[tuple[str, bytes]]] = namespace["signed"]
    return signer


@pytest.fixture
def upstream_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    key = generate_key()
    path = tmp_path / "upstream-acme.pem"
    write_private_key(path, key)
    monkeypatch.setenv("FEDBUS_SIGNING_KEY_FILE", str(path))
    return key


def directory_knowing(key: Any) -> KeyDirectory:
    """A consumer's directory holding ``key`` as upstream-acme's, published by the root."""
    root = generate_key()
    directory = KeyDirectory([root.public_key()], load_topics())
    event = key_record(key, principal="upstream-acme", role="upstream", binds={"tenant": "acme"})
    value = encode_event(event, "json")
    headers = Signer(root).sign(KEY_TOPIC, event.kafka_key(), value, [("content-type", CT)])
    assert directory.add_record(event.kafka_key(), value, headers) is not None
    return directory


def test_the_documented_recipe_is_what_fedbus_signs(upstream_key: Any) -> None:
    headers = documented_signer()(TOPIC, KEY, VALUE, CT)

    assert headers == Signer(upstream_key).sign(TOPIC, KEY, VALUE, [("content-type", CT)])
    assert os.environ["FEDBUS_SIGNING_KEY_FILE"].endswith("upstream-acme.pem")


def test_a_consumer_verifies_the_documented_signature(upstream_key: Any) -> None:
    headers = documented_signer()(TOPIC, KEY, VALUE, CT)

    assert directory_knowing(upstream_key).verify_signature(TOPIC, KEY, VALUE, headers).principal \
        == "upstream-acme"  # fmt: skip


@pytest.mark.parametrize(
    ("topic", "key", "value", "content_type"),
    [
        (TOPIC, KEY, VALUE.replace(b"acme", b"acmf"), CT),
        ("upstream.job.requested.globex", KEY, VALUE, CT),
        (TOPIC, b"job-other", VALUE, CT),
        (TOPIC, KEY, VALUE, b"avro/binary"),
    ],
    ids=["tampered-value", "other-topic", "other-key", "other-content-type"],
)
def test_a_changed_record_is_refused(
    upstream_key: Any, topic: str, key: bytes, value: bytes, content_type: bytes
) -> None:
    headers = documented_signer()(TOPIC, KEY, VALUE, CT)
    headers = [(n, content_type if n == "content-type" else v) for n, v in headers]

    with pytest.raises(EventSignatureError) as refused:
        directory_knowing(upstream_key).verify_signature(topic, key, value, headers)
    assert refused.value.reason == "bad_signature"
