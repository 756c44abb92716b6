"""Temporary read-only MinIO credentials (an auditor's), from STS AssumeRole.

The deployment's MinIO user asks MinIO's STS for credentials limited by an inline session
policy to reading the artifact bucket (``s3:GetObject``, ``s3:ListBucket``,
``s3:GetBucketLocation``): whatever the user may do, the credentials can neither write nor
delete (MinIO intersects the two policies). They expire after ``duration_s`` (MinIO allows
up to 7 days here); ask again to renew.

    python -m fedbus.storage.readonly [--duration-s N]   # prints FEDBUS_MINIO_* env lines
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from fedbus.settings import FedbusSettings, load_settings
from fedbus.storage.s3 import minio_client

__all__ = ["READ_ONLY_ACTIONS", "read_only_credentials", "read_only_policy"]

READ_ONLY_ACTIONS = ("s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation")
WEEK_S = 7 * 24 * 3600


def read_only_policy(bucket: str) -> dict[str, Any]:
    """The session policy: read ``bucket`` and its objects, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Action": list(READ_ONLY_ACTIONS),
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }],
    }  # fmt: skip


def read_only_credentials(settings: FedbusSettings, *, duration_s: int = WEEK_S) -> dict[str, str]:
    """``FEDBUS_MINIO_ACCESS_KEY``, ``_SECRET_KEY`` and ``_SESSION_TOKEN`` of credentials that
    may only read ``settings.minio_bucket``, and ``expires`` (ISO 8601)."""
    sts = minio_client("sts", settings)
    answer = sts.assume_role(
        RoleArn="arn:minio:iam:::role/fedbus-auditor", RoleSessionName="fedbus-auditor",
        Policy=json.dumps(read_only_policy(settings.minio_bucket)), DurationSeconds=duration_s,
    )  # fmt: skip
    c = answer["Credentials"]
    return {
        "FEDBUS_MINIO_ACCESS_KEY": c["AccessKeyId"],
        "FEDBUS_MINIO_SECRET_KEY": c["SecretAccessKey"],
        "FEDBUS_MINIO_SESSION_TOKEN": c["SessionToken"],
        "expires": c["Expiration"].isoformat(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the env lines of read-only credentials (as the settings' MinIO user)."""
    parser = argparse.ArgumentParser(prog="python -m fedbus.storage.readonly", description=__doc__)
    parser.add_argument("--duration-s", type=int, default=WEEK_S)
    args = parser.parse_args(argv)
    found = read_only_credentials(load_settings(FedbusSettings), duration_s=args.duration_s)
    print(f"# read-only MinIO credentials, expire {found.pop('expires')}")
    print("\n".join(f"{k}={v}" for k, v in found.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
