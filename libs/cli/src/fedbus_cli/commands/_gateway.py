"""An HTTP client for the fedbus gateway, shared by ``fedbus jobs`` and ``fedbus models``.

Settings: ``FEDBUS_GATEWAY_URL`` and ``FEDBUS_API_KEY`` (environment or ``.env``), or the
``--gateway`` / ``--api-key`` flags, which win.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, SSEError, connect_sse
from pydantic import SecretStr

from fedbus.settings import FedbusSettings, load_settings

__all__ = [
    "CliGatewaySettings",
    "GatewayAction",
    "GatewayClient",
    "GatewayError",
    "StreamLostError",
    "add_connection_flags",
    "client_from_args",
    "run_with_client",
]


GatewayAction = Callable[["GatewayClient", argparse.Namespace], int]
"""A command's body: it calls the gateway through the client and returns the exit code."""

TRANSPORT: httpx.BaseTransport | None = None
"""The transport every client uses; None is the network (tests put a fake gateway here)."""


class CliGatewaySettings(FedbusSettings):
    """Where the gateway is and the key to call it with."""

    gateway_url: str = "http://127.0.0.1:8080"
    api_key: SecretStr | None = None


class GatewayError(Exception):
    """The gateway refused a call or could not be reached; the message says why."""


class StreamLostError(GatewayError):
    """An event stream could not be opened or broke off: worth reconnecting."""


class GatewayClient:
    """Calls to the gateway's ``/v1`` API with an API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
        download_ssl: ssl.SSLContext | None = None,
    ) -> None:
        """``download_ssl``: the TLS context presigned links are fetched with (one trusting
        ``FEDBUS_MINIO_CA_FILE``); None: the system's CAs. Certificates are always checked."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._transport = transport
        self._download_verify: ssl.SSLContext | bool = download_ssl or True

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful call; :class:`GatewayError` otherwise."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.base_url}: {exc}") from exc
        if response.is_error:
            raise GatewayError(_explain(response))
        return response.json()

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[ServerSentEvent]:
        """Follow ``GET /v1/jobs/{id}/events`` until the server ends the stream.

        Yields the events that carry data: httpx-sse also dispatches the blank line after a
        keep-alive comment as an empty event once the stream has sent an ``id``. With
        ``last_event_id`` the gateway resumes after that event; a lost connection raises
        :class:`StreamLostError`.
        """
        url = f"/v1/jobs/{job_id}/events"
        resume = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        try:
            with connect_sse(self._http, "GET", url, timeout=None, headers=resume) as source:
                if source.response.is_error:
                    source.response.read()
                    raise GatewayError(_explain(source.response))
                yield from (sse for sse in source.iter_sse() if sse.data)
        except httpx.TransportError as exc:
            raise StreamLostError(f"lost the event stream of job {job_id}: {exc}") from exc
        except SSEError as exc:
            raise GatewayError(f"the gateway did not answer with an event stream: {exc}") from exc

    def download(self, url: str) -> Iterator[bytes]:
        """The bytes at ``url`` (a presigned link: sent without the API key)."""
        try:
            with (
                httpx.Client(
                    timeout=60.0, transport=self._transport, verify=self._download_verify
                ) as plain,
                plain.stream("GET", url) as response,
            ):
                if response.is_error:
                    raise GatewayError(f"download failed: HTTP {response.status_code}")
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise GatewayError(f"download failed: {exc}") from exc


def _explain(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return f"HTTP {response.status_code}: {detail}"


def add_connection_flags(parser: argparse.ArgumentParser, *, timeout_s: float = 30.0) -> None:
    """``--gateway``, ``--api-key`` (defaults from the settings) and ``--timeout``."""
    parser.add_argument("--gateway", default=None, help="gateway URL ($FEDBUS_GATEWAY_URL)")
    parser.add_argument("--api-key", default=None, help="API key ($FEDBUS_API_KEY)")
    parser.add_argument(
        "--timeout", type=float, default=timeout_s, metavar="SECONDS",
        help=f"longest wait for one answer of the gateway (default {timeout_s:g})",
    )  # fmt: skip


def client_from_args(args: argparse.Namespace) -> GatewayClient:
    """A client from the flags, falling back to the settings."""
    settings = load_settings(CliGatewaySettings)
    key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    return GatewayClient(
        args.gateway or settings.gateway_url,
        key,
        timeout_s=getattr(args, "timeout", 30.0),
        transport=TRANSPORT,
        download_ssl=settings.minio_ssl_context(),
    )


def run_with_client(args: argparse.Namespace, action: GatewayAction) -> int:
    """Run ``action`` with a client from ``args``; a :class:`GatewayError` exits 2.

    The one runner of every gateway command: the error is printed as ``error: ...`` on
    stderr and the client is closed whatever happens.
    """
    client = client_from_args(args)
    try:
        return action(client, args)
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
