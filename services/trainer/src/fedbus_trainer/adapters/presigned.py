"""Artifacts through the presigned URLs of a ``round.assigned``: the trainer's only storage.

The trainer holds no MinIO credentials. It GETs the global model from the URL it was
granted and PUTs its update to the URL granted for its one update key, with httpx; TLS is
verified against ``FEDBUS_MINIO_CA_FILE`` when set (the system's CAs otherwise). Bodies are
sealed and opened with the artifact keyring as :class:`fedbus.storage.ArtifactStore` does
(the ``FBE2`` envelope, the object key authenticated), and the plaintext's size and SHA-256
are checked against the reference.
"""

from __future__ import annotations

import logging
import ssl

import httpx

from fedbus.errors import NonRetryableError
from fedbus.events import ModelRef
from fedbus.storage import (
    AesGcmCipher,
    ArtifactNotFoundError,
    StorageUnavailableError,
    open_sealed,
    seal,
    sha256_hex,
)

__all__ = ["GrantRefusedError", "PresignedArtifacts"]


class GrantRefusedError(NonRetryableError):
    """The object store refused the URL (expired, or not for this request): no retry helps."""


class PresignedArtifacts:
    """Reads and writes artifacts through presigned URLs.

    Parameters
    ----------
    cipher
        The artifact keyring (None: bodies are plaintext, development only).
    ssl_context
        Verifies the object store's certificate: ``settings.minio_ssl_context()`` (the CA of
        ``FEDBUS_MINIO_CA_FILE``, else the system's); None: the system's CAs.
    require_https
        Refuse ``http://`` URLs (production).
    timeout_s
        Per-request connect and read timeout.
    transport
        httpx's transport (tests pass a ``MockTransport``); None: the network.
    """

    def __init__(
        self,
        cipher: AesGcmCipher | None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        require_https: bool = False,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._cipher = cipher
        self._require_https = require_https
        verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        # httpx logs every request's full URL at INFO; a presigned URL is a credential until it
        # expires, so only its warnings reach the trainer's logs.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._http = httpx.AsyncClient(
            verify=verify, timeout=timeout_s, follow_redirects=False, transport=transport
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get_bytes(self, url: str, ref: ModelRef) -> bytes:
        """The plaintext of ``ref`` read through ``url``, decrypted and checked.

        Raises
        ------
        GrantRefusedError
            The server refused the URL (403, 400: expired or tampered).
        ArtifactNotFoundError
            No object under the granted key.
        ArtifactIntegrityError, DecryptionError
            The bytes are not what ``ref`` names.
        StorageUnavailableError
            The server did not answer or failed (worth retrying).
        """
        response = await self._send("GET", url, what=ref.object_key)
        return open_sealed(self._cipher, response.content, ref)

    async def put_bytes(self, url: str, data: bytes, *, key: str) -> ModelRef:
        """Seal ``data`` for ``key`` and PUT it through ``url``; the reference names the plaintext.

        ``key`` must be the key the URL was granted for: the envelope authenticates it, so
        a body written under another key would not open.
        """
        body = seal(self._cipher, data, key=key)
        await self._send("PUT", url, what=key, content=body)
        return ModelRef(object_key=key, size_bytes=len(data), sha256=sha256_hex(data))

    async def _send(
        self, method: str, url: str, *, what: str, content: bytes | None = None
    ) -> httpx.Response:
        if self._require_https and not url.startswith("https://"):
            raise GrantRefusedError(f"{method} {what}: the granted URL is not https")
        try:
            response = await self._http.request(method, url, content=content)
        except httpx.HTTPError as exc:
            raise StorageUnavailableError(f"{method} {what}: {type(exc).__name__}") from exc
        status = response.status_code
        if status < 300:
            return response
        # Never log the URL: until it expires it is a bearer credential.
        if status == 404:
            raise ArtifactNotFoundError(f"{method} {what}: no such object")
        if status in (400, 401, 403):
            raise GrantRefusedError(f"{method} {what}: refused ({status}, {_s3_code(response)})")
        raise StorageUnavailableError(f"{method} {what}: HTTP {status}")


def _s3_code(response: httpx.Response) -> str:
    """The ``<Code>`` of an S3 error body (``AccessDenied``, ``ExpiredToken``...), if any."""
    text = response.text
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6 : end] if 0 <= start < end else "no code"
