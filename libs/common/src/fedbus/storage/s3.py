"""The MinIO (S3 API) adapter, through boto3 so any S3-compatible server can stand in."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from fedbus.events import ModelRef
from fedbus.settings import FedbusSettings
from fedbus.storage.base import ArtifactNotFoundError, ArtifactStore, StorageUnavailableError
from fedbus.storage.crypto import AesGcmCipher
from fedbus.storage.keys import artifact_cipher

__all__ = ["S3ArtifactStore", "minio_client"]

_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3ArtifactStore(ArtifactStore):
    """Artifacts in one bucket of an S3-compatible store (MinIO in fedbus deployments)."""

    def __init__(self, client: Any, bucket: str, cipher: AesGcmCipher | None = None) -> None:
        super().__init__(cipher)
        self._s3 = client
        self.bucket = bucket

    @classmethod
    def from_settings(
        cls,
        settings: FedbusSettings,
        cipher: AesGcmCipher | None = None,
        *,
        endpoint: str | None = None,
    ) -> S3ArtifactStore:
        """Client for ``FEDBUS_MINIO_*`` (TLS verified with ``FEDBUS_MINIO_CA_FILE`` if set).

        ``endpoint`` replaces ``FEDBUS_MINIO_ENDPOINT``: a store used only to presign URLs for
        others signs the host they reach MinIO at (SigV4 signs the host).

        Without ``cipher``, artifacts are encrypted with the keyring of
        ``FEDBUS_ARTIFACT_KEYS``/``FEDBUS_ARTIFACT_KEYS_FILE`` (see
        :func:`fedbus.storage.keys.artifact_cipher`): in production a store without keys
        refuses to be built, so a service that holds artifacts refuses to start.
        """
        if cipher is None:
            cipher = artifact_cipher(settings)
        client = minio_client(
            "s3",
            settings,
            endpoint=endpoint,
            # Integrity is fedbus's own: a PUT carries the body's SHA-256 (which the server
            # checks) and every read is checked against the SHA-256 its event carries.
            # botocore's own CRC32 per request and response, and the SHA-256 of the body for
            # the signature on plain HTTP, would hash each body twice more (a PUT of 1.7 MB:
            # 3.7 -> 1.9 ms of CPU).
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path", "payload_signing_enabled": False},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        return cls(client, settings.minio_bucket, cipher)

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist."""
        try:
            await asyncio.to_thread(self._s3.head_bucket, Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise StorageUnavailableError(f"bucket {self.bucket}: {exc}") from exc
            await self._call(self._s3.create_bucket, Bucket=self.bucket)

    async def _put(self, key: str, body: bytes, *, sha256: str) -> None:
        # The body's SHA-256 travels in a signed header and MinIO refuses a body that does not
        # match it: what is stored is what was sent.
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        await self._call(
            self._s3.put_object, Bucket=self.bucket, Key=key, Body=body, ChecksumSHA256=checksum
        )

    async def _get(self, key: str) -> bytes:
        try:
            response = await asyncio.to_thread(self._s3.get_object, Bucket=self.bucket, Key=key)
            return bytes(await asyncio.to_thread(response["Body"].read))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise ArtifactNotFoundError(f"no artifact {self.bucket}/{key}") from exc
            raise StorageUnavailableError(f"get {key}: {exc}") from exc
        except (BotoCoreError, EndpointConnectionError) as exc:
            raise StorageUnavailableError(f"get {key}: {exc}") from exc

    async def stored_size(self, key: str) -> int | None:
        """See :class:`ArtifactStore` (a HEAD request: its ``Content-Length``)."""
        try:
            head = await asyncio.to_thread(self._s3.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise ArtifactNotFoundError(f"no artifact {self.bucket}/{key}") from exc
            raise StorageUnavailableError(f"head {key}: {exc}") from exc
        except (BotoCoreError, EndpointConnectionError) as exc:
            raise StorageUnavailableError(f"head {key}: {exc}") from exc
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        """See :class:`ArtifactStore`."""
        try:
            await asyncio.to_thread(self._s3.head_object, Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise StorageUnavailableError(f"head {key}: {exc}") from exc
        except (BotoCoreError, EndpointConnectionError) as exc:
            raise StorageUnavailableError(f"head {key}: {exc}") from exc

    def presigned_url(self, ref: ModelRef, *, expires_s: int = 3600) -> str:
        """A time-limited download URL for ``ref``.

        The bytes are as stored: with a cipher, the envelope, which only a holder of the key
        can open (``fedbus models download`` decrypts it with the keyring of its settings).
        """
        return self.presign("get_object", ref.object_key, expires_s=expires_s)

    def presign(
        self, operation: Literal["get_object", "put_object"], key: str, *, expires_s: int
    ) -> str:
        """A SigV4 presigned URL for one ``operation`` on ``key``, valid ``expires_s`` seconds.

        It grants exactly that: a GET URL reads that one object, a PUT URL writes it; any other
        key, method or an expired URL is refused by the server (403). No request is made.
        """
        return str(
            self._s3.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            )
        )

    async def _call(self, fn: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except (ClientError, BotoCoreError, EndpointConnectionError) as exc:
            raise StorageUnavailableError(f"{fn.__name__}: {exc}") from exc


def minio_client(
    service: Literal["s3", "sts"],
    settings: FedbusSettings,
    *,
    endpoint: str | None = None,
    config: Config | None = None,
) -> Any:
    """A boto3 client of MinIO's ``service`` with the settings' credentials (and session
    token, for temporary ones), region and CA; ``endpoint`` replaces the settings'."""
    token = settings.minio_session_token
    return boto3.client(
        service,
        endpoint_url=endpoint or settings.minio_endpoint,
        aws_access_key_id=settings.minio_access_key,
        aws_secret_access_key=settings.minio_secret_key.get_secret_value(),
        aws_session_token=token.get_secret_value() if token else None,
        region_name=settings.minio_region,
        verify=str(settings.minio_ca_file) if settings.minio_ca_file else True,
        config=config,
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
