"""Request bodies. Unknown fields are refused, as a real provider refuses unknown parameters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# An id or a token: printable, with no blank at either end.
ID = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthorizeRequest(_Request):
    order_id: str = Field(min_length=1, max_length=200, pattern=ID)
    amount: int = Field(gt=0, strict=True, description="minor units")
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217, any case")
    payment_token: str = Field(min_length=1, max_length=200, pattern=ID)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class CaptureRequest(_Request):
    amount: int | None = Field(default=None, gt=0, strict=True, description="default: all")


class RefundRequest(_Request):
    authorization_id: str = Field(min_length=1, max_length=200, pattern=ID)
    amount: int = Field(gt=0, strict=True, description="minor units")
