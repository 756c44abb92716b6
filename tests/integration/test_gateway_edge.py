"""The real gateway process at its edge: oversized bodies refused unread, before any key check."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import httpx
import pytest

from tests.integration.gateway_process import Gateway

MB = 1024 * 1024
TOTAL = 50 * MB
CHUNK = 64 * 1024
LIMIT = 1024 * 1024  # the default FEDBUS_GATEWAY_MAX_BODY_BYTES


class Body:
    """A 50 MB body produced as it is sent, counting how much the client got to send."""

    def __init__(self) -> None:
        self.sent = 0

    async def stream(self) -> AsyncIterator[bytes]:
        while self.sent < TOTAL:
            self.sent += CHUNK
            yield b"x" * CHUNK


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response: its head and its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert found is not None, head
    return head, await reader.readexactly(int(found.group(1)))


async def post_while_reading(url: str, *, declared: bool) -> tuple[int, tuple[bytes, bytes]]:
    """POST a 50 MB body with no key, reading the answer while sending, as curl does.

    Stops sending once the answer arrives; returns the body bytes sent and the answer.
    """
    target = urlparse(url)
    reader, writer = await asyncio.open_connection(target.hostname, target.port)
    framing = f"Content-Length: {TOTAL}" if declared else "Transfer-Encoding: chunked"
    writer.write(f"POST /v1/jobs HTTP/1.1\r\nHost: {target.netloc}\r\n"
                 f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode())  # fmt: skip
    answer = asyncio.create_task(read_answer(reader))
    sent = 0
    try:
        while sent < TOTAL and not answer.done():
            chunk = b"x" * CHUNK
            writer.write(chunk if declared else b"%x\r\n%s\r\n" % (CHUNK, chunk))
            await writer.drain()
            sent += CHUNK
    finally:
        raw = await asyncio.wait_for(answer, 10)
        writer.close()
    return sent, raw


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_50_mb_body_with_no_key_gets_413_without_being_sent_in_full(
    gateway: Gateway, declared: bool
) -> None:
    sent, (head, body) = await post_while_reading(gateway.url, declared=declared)

    assert head.startswith(b"HTTP/1.1 413 "), head  # not 401: refused before the key mattered
    assert json.loads(body) == {
        "detail": f"the request body is larger than the limit of {LIMIT} bytes"
    }
    # What left the client is what the sockets' buffers took before the answer, not 50 MB.
    assert sent < 16 * MB, sent
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_a_client_that_sends_it_all_before_reading_still_gets_the_413(
    gateway: Gateway,
) -> None:
    body = Body()

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        response = await client.post("/v1/jobs", content=body.stream(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip

    # httpx sends the whole body first: the gateway discarded it unread, and kept the socket
    # open, so the answer is the 413 rather than a reset connection.
    assert response.status_code == 413
    assert body.sent >= TOTAL


async def test_a_body_under_the_limit_still_reaches_the_key_check(gateway: Gateway) -> None:
    body = b"{" + b" " * (LIMIT - 2) + b"}"

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        response = await client.post("/v1/jobs", content=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip

    assert response.status_code == 401
