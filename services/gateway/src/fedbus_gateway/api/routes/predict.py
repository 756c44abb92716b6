"""``POST /v1/models/{name}/versions/{version}:predict``: predictions of a registered version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fedbus_gateway.api.deps import Gateway, get_gateway, require
from fedbus_gateway.api.json_body import FastJsonRoute
from fedbus_gateway.api.params import ModelName, ModelVersion
from fedbus_gateway.api.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    ErrorBody,
    FieldError,
    ValidationErrorBody,
)
from fedbus_gateway.auth import Principal
from fedbus_gateway.predict import InputError, PredictError
from fedbus_gateway.settings import Scope

__all__ = ["PredictRequest", "PredictResponse", "router"]

# Bodies are parsed by pydantic-core: json.loads took as long as the CNN's forward pass.
router = APIRouter(prefix="/v1/models", tags=["models"], route_class=FastJsonRoute)

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
Predicting = Annotated[Principal, Depends(require(Scope.MODELS_PREDICT))]


class PredictRequest(BaseModel):
    """Rows to classify."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(
        description=(
            "One entry per example: an array of the dataset's feature shape (`[1, 28, 28]` "
            "for MNIST) or the same numbers flat (784). Numbers only, finite as float32; at "
            "most `FEDBUS_GATEWAY_PREDICT_MAX_ROWS` rows (256 by default)."
        ),
        examples=[[[0.0] * 784]],
    )


class PrivacyStatement(BaseModel):
    """The version's differential-privacy guarantee, as the registry certified it."""

    mode: str = Field(description="`none`, `central_dp` or `local_dp`.")
    epsilon: float | None = Field(description="Spent epsilon of the whole job; null without DP.")
    delta: float | None = Field(description="The job's delta; null without DP.")


class PredictResponse(BaseModel):
    """One label and one probability vector per input row, and the privacy guarantee."""

    model: str
    version: int
    classes: list[str] = Field(description="The class names, in the order of `probabilities`.")
    labels: list[str] = Field(description="The most probable class of each row.")
    probabilities: list[list[float]] = Field(description="Softmax over `classes`, per row.")
    privacy: PrivacyStatement


_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    **BODY_ERRORS,
    404: {"model": ErrorBody, "description": "No such model or version for the caller's tenant."},
    413: {
        "model": ErrorBody,
        "description": "More rows than `FEDBUS_GATEWAY_PREDICT_MAX_ROWS`, "
        "or a body over `FEDBUS_GATEWAY_MAX_BODY_BYTES`.",
    },
    422: {
        "model": ValidationErrorBody,
        "description": "A parameter, or the inputs' shape, "
        "type or values (`body.inputs`): `detail` says what the model expects.",
    },
    500: {"model": ErrorBody, "description": "The registered weights do not fit the model."},
    501: {
        "model": ErrorBody,
        "description": "This gateway cannot build the model (unknown dataset facts, no torch).",
    },
    502: {"model": ErrorBody, "description": "The registry failed or served wrong weights."},
    503: {"model": ErrorBody, "description": "The registry is unreachable."},
}


@router.post(
    "/{name}/versions/{version}:predict",
    summary="Classify rows with a registered model version",
    response_model=PredictResponse,
    responses=_ERRORS,
)
async def predict(
    name: ModelName,
    version: ModelVersion,
    body: PredictRequest,
    gateway: GatewayDep,
    principal: Predicting,
) -> JSONResponse:
    """Load the version (its weights verified by SHA-256, cached), batch the rows with other
    concurrent requests into one forward pass, answer labels and probabilities with the
    version's privacy guarantee (epsilon, delta, mode)."""
    try:
        answer = await gateway.predictions().predict(principal.tenant, name, version, body.inputs)
    except InputError as exc:
        if exc.status != 422:
            raise HTTPException(exc.status, exc.message) from None
        error = FieldError(field="body.inputs", message=exc.message, type="inputs")
        refused = ValidationErrorBody(detail=exc.message, errors=[error])
        return JSONResponse(refused.model_dump(), status_code=422)
    except PredictError as exc:
        raise HTTPException(exc.status, exc.detail) from None
    return JSONResponse(answer)
