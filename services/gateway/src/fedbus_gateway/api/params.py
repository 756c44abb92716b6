"""Parameter types the routes share: text the stores can hold, integers that fit them.

A path or query parameter with a NUL character or an unpaired surrogate (``/v1/jobs/a%00b``)
is refused with 422 naming it, before any store is asked: PostgreSQL cannot hold such text,
and a lookup with it fails there rather than finding nothing. Integers are bounded by the
column that holds them (a model version is a PostgreSQL ``integer``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from starlette.convertors import StringConvertor, register_url_convertor

from fedbus.events import StorableText

__all__ = ["INT32_MAX", "VERSION_SEGMENT", "JobId", "ModelName", "ModelVersion", "Text"]

INT32_MAX = 2**31 - 1
"""The largest PostgreSQL ``integer`` (and Avro ``int``)."""

Text = StorableText
"""A ``str`` without NUL or unpaired surrogates (422 ``string_nul`` / ``string_surrogate``)."""

JobId = Annotated[
    Text,
    Path(description="The job's id, as `POST /v1/jobs` returned it (no NUL, no lone surrogate)."),
]
"""The ``{job_id}`` path parameter."""

ModelName = Annotated[Text, Path(description="The model's name (no NUL, no lone surrogate).")]
"""The ``{name}`` path parameter of ``/v1/models``."""

ModelVersion = Annotated[int, Path(ge=1, le=INT32_MAX, description="The version number.")]
"""The ``{version}`` path parameter: 1 to 2**31 - 1, what the registry's column holds."""


class _VersionSegment(StringConvertor):
    """A path segment without ``:``, so ``/versions/{version}`` never matches the custom
    method ``/versions/1:predict`` (which would then also answer GET, with a 422)."""

    regex = "[^/:]+"


register_url_convertor("version_segment", _VersionSegment())
VERSION_SEGMENT = "{version:version_segment}"
"""The ``{version}`` segment of a path that must not swallow a ``:method`` suffix (the
document still shows ``{version}``; the value is validated as :data:`ModelVersion`)."""
