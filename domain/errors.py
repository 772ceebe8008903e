"""Business refusal types: the `type` of a non-retryable ApplicationError.

Workflows and the API branch on these, never on message text.
"""

from enum import StrEnum


class ErrorType(StrEnum):
    UNKNOWN_PRODUCT = "UnknownProduct"
    OUT_OF_STOCK = "OutOfStock"
    PAYMENT_DECLINED = "PaymentDeclined"
    # The provider refused the request itself (400, 401, 409, ...): not the card.
    PAYMENT_REJECTED = "PaymentRejected"
    # The provider stayed unreachable past the step's deadline.
    PAYMENT_UNAVAILABLE = "PaymentUnavailable"
    SHIPPING_REFUSED = "ShippingRefused"
    FRAUD_SUSPECTED = "FraudSuspected"
    INVALID_ORDER = "InvalidOrder"
    INSUFFICIENT_CREDIT = "InsufficientCredit"
    ORDER_NOT_CANCELLABLE = "OrderNotCancellable"
    ORDER_CLOSED = "OrderClosed"
    # The order id is taken by an order of the other saga mode.
    ORDER_EXISTS = "OrderExists"
    # A late attempt of a step whose undo already ran (see db.unit_of_work).
    STEP_FENCED = "StepFenced"
    # Returns: the order takes none (not CONFIRMED), or not that many units.
    ORDER_NOT_RETURNABLE = "OrderNotReturnable"
    RETURN_EXCEEDS_ORDER = "ReturnExceedsOrder"


# Business refusals are final: retrying cannot turn a declined card into a paid one.
NON_RETRYABLE_ERROR_TYPES: tuple[str, ...] = tuple(e.value for e in ErrorType)
