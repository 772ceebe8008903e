"""A codec server: the Temporal Web UI sends encrypted payloads here to show them decoded.

Point the UI at `<api>/codec` (its "Codec Server" setting, or the dev
server's `--ui-codec-endpoint`). Only callers with an API key reach it when
keys are configured (api.access); the UI's origin must be in
`SAGA_CODEC_CORS_ORIGINS` for the browser to call it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payloads

from api.problems import Problem
from api.roles import ADMINS
from api.schemas import CodecPayloads
from security.codec import AesGcmCodec

router = APIRouter(prefix="/codec", tags=["codec"])


def _codec(request: Request) -> AesGcmCodec:
    codec: AesGcmCodec | None = request.app.state.codec
    if codec is None:
        raise Problem(
            404, "No codec", "payload encryption is off (SAGA_PAYLOAD_CODEC_KEY)", code="no-codec"
        )
    return codec


def _payloads(body: CodecPayloads) -> Payloads:
    try:
        return ParseDict(body.model_dump(), Payloads())
    except ParseError as err:
        raise Problem(
            422, "Invalid payloads", f"payloads: {err}", code="validation", field="payloads"
        ) from None


@router.post("/decode", dependencies=ADMINS, summary="Decrypt payloads (for the Web UI)")
async def decode(request: Request, body: CodecPayloads) -> dict[str, Any]:
    # Unencrypted payloads come back as sent (the UI also sends those the SDK
    # or the server wrote, such as patch markers): workers refuse them, but
    # showing the caller what it sent reveals nothing.
    try:
        decoded = _codec(request).show(_payloads(body).payloads)
    except ValueError as err:  # another key, or tampered with
        raise Problem(
            422, "Undecodable payload", str(err), code="undecodable", field="payloads"
        ) from None
    return MessageToDict(Payloads(payloads=decoded))


@router.post(
    "/encode",
    dependencies=ADMINS,
    summary="Encrypt payloads (for the Web UI's signals and updates)",
)
async def encode(request: Request, body: CodecPayloads) -> dict[str, Any]:
    encoded = await _codec(request).encode(_payloads(body).payloads)
    return MessageToDict(Payloads(payloads=encoded))
