"""How validation errors name the field a client got wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.problems import _field, _message
from api.schemas import PlaceOrderRequest
from domain.orders import OrderLine


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("body", "items", 2, "sku"), "items[2].sku"),
        (("body", "customer_id"), "customer_id"),
        (("body",), "body"),
        (("header", "Idempotency-Key"), "header.Idempotency-Key"),
        (("query", "limit"), "query.limit"),
    ],
)
def test_field_names_read_like_the_json_path(loc, field):
    assert _field(loc) == field


def test_fingerprint_is_stable_and_sensitive_to_the_body():
    a = PlaceOrderRequest(
        customer_id="c", items=[OrderLine(sku="A", quantity=1)], payment_token="t"
    )
    same = PlaceOrderRequest(
        customer_id="c", items=[OrderLine(sku="A", quantity=1)], payment_token="t"
    )
    other = PlaceOrderRequest(
        customer_id="c", items=[OrderLine(sku="A", quantity=2)], payment_token="t"
    )

    assert a.fingerprint() == same.fingerprint()
    assert a.fingerprint() != other.fingerprint()


def test_fingerprints_recorded_before_tokens_were_sealed_still_match():
    # Orders record the fingerprint of the request as sent (clear token); a
    # replay of a request placed by an earlier release must still match it.
    body = PlaceOrderRequest(
        customer_id="cust-42", items=[OrderLine(sku="KB-001", quantity=1)], payment_token="tok_visa"
    )

    assert body.fingerprint() == "8c8882eca6f0dd2dd1ea61ba7cca4fd4850cdbcaf29b97df95277d7d459f2b25"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("customer_id", " cust-42", "String should be printable, with no blank at either end"),
        (
            "payment_token",
            "tok ",
            "String should be empty, or printable with no blank at either end",
        ),
    ],
)
def test_a_missed_pattern_is_told_in_words_not_as_its_regex(field, value, message):
    body = {"customer_id": "c", "items": [{"sku": "A", "quantity": 1}], field: value}
    with pytest.raises(ValidationError) as refused:
        PlaceOrderRequest.model_validate(body)

    [error] = refused.value.errors()
    assert _message(error) == message
