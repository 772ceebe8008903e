"""What POST /orders/{id}/returns takes and answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from api.schemas import ID_PATTERN, fingerprint_of
from domain.orders import MAX_ITEMS, MAX_QUANTITY
from domain.returns import ReturnLine


class ReturnLineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY)


class ReturnRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"items": [{"sku": "KB-001", "quantity": 1}]}]},
    )

    items: list[ReturnLineRequest] = Field(min_length=1, max_length=MAX_ITEMS)

    @field_validator("items")
    @classmethod
    def _each_sku_once(cls, items: list[ReturnLineRequest]) -> list[ReturnLineRequest]:
        seen: set[str] = set()
        for line in items:
            if line.sku in seen:
                raise ValueError(f"sku {line.sku} is given twice: give each sku once")
            seen.add(line.sku)
        return items

    def lines(self) -> list[ReturnLine]:
        return [ReturnLine(sku=line.sku, quantity=line.quantity) for line in self.items]

    def fingerprint(self) -> str:
        """Same body, same fingerprint: a replayed Idempotency-Key from a reused one."""
        return fingerprint_of(self.model_dump(mode="json"))


class ReturnAccepted(BaseModel):
    return_id: str
    order_id: str
    status: str
