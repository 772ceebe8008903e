"""Every activity the sagas and the 2PC coordinator call, built from settings and keyed by name.

Part of the composition root (wiring.root): the activities take the slices
they need (settings_slices); only this wiring reads `Settings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.common import MetricMeter

from activities.card_hold import CardHoldParticipant
from activities.coordinator_log import CoordinatorLog
from activities.fraud import FraudActivities
from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.provider_client import PaymentProviderClient
from activities.provider_retry import ProviderRetry
from activities.return_goods import ReturnInventoryActivities, ReturnShippingActivities
from activities.return_refunds import ReturnRefundActivities
from activities.returns import ReturnOrderActivities
from activities.shipping import ShippingActivities
from activities.stock_branch import StockParticipant
from activities.store_credit import StoreCreditParticipant, StoreCreditRefunds
from activities.transaction_recovery import TransactionRecovery
from choreography.handlers import Reactions
from db.engine import SessionFactory, create_session_factory
from db.wallet_store import WalletStore
from domain.activities import Act, TwoPhaseAct
from domain.returns import ReturnAct
from observability.temporal_metrics import BreakerGauge
from resilience.backoff import Backoff
from resilience.breaker import CircuitBreaker
from security.sealed import Sealer
from settings import Settings
from settings_slices import ProviderConfig


def all_activities(
    engine: AsyncEngine, settings: Settings, provider: PaymentProviderClient
) -> dict[str, Callable[..., Any]]:
    """Every activity the sagas and the 2PC coordinator call, by name, on one engine.

    Keyed by activity name so a test can swap one for a stand-in of the same name.
    """
    sessions = create_session_factory(engine)
    orders = OrderActivities(sessions)
    inventory = InventoryActivities(sessions)
    payments = PaymentActivities(
        sessions,
        provider,
        provider_retry(settings.provider()),
        Sealer.from_keys(settings.card_keys()),
    )
    shipping = ShippingActivities(sessions)
    two_phase = settings.two_phase()
    stock = StockParticipant(engine, two_phase.xa_lock_timeout_ms)
    wallets = WalletStore(two_phase.wallet_snapshot_every)
    credit = StoreCreditParticipant(engine, two_phase.xa_lock_timeout_ms, wallets)
    card = card_participant(engine, settings, provider)
    log = CoordinatorLog(sessions)
    fraud = FraudActivities(
        engine, settings.fraud().max_order_total, settings.fraud().max_orders_per_minute
    )
    return {
        Act.CREATE_ORDER: orders.create_order,
        Act.CHECK_FRAUD: fraud.check_fraud,
        Act.CONFIRM_ORDER: orders.confirm_order,
        Act.CANCEL_ORDER: orders.cancel_order,
        Act.RESERVE_STOCK: inventory.reserve_stock,
        Act.RELEASE_STOCK: inventory.release_stock,
        Act.CHARGE_PAYMENT: payments.charge_payment,
        Act.REFUND_PAYMENT: payments.refund_payment,
        Act.CREATE_SHIPMENT: shipping.create_shipment,
        Act.CANCEL_SHIPMENT: shipping.cancel_shipment,
        TwoPhaseAct.PREPARE_STOCK: stock.prepare_stock,
        TwoPhaseAct.COMMIT_STOCK: stock.commit_stock,
        TwoPhaseAct.ABORT_STOCK: stock.abort_stock,
        TwoPhaseAct.PREPARE_STORE_CREDIT: credit.prepare_store_credit,
        TwoPhaseAct.COMMIT_STORE_CREDIT: credit.commit_store_credit,
        TwoPhaseAct.ABORT_STORE_CREDIT: credit.abort_store_credit,
        TwoPhaseAct.REFUND_STORE_CREDIT: StoreCreditRefunds(sessions, wallets).refund_store_credit,
        TwoPhaseAct.TRY_CARD_HOLD: card.try_card_hold,
        TwoPhaseAct.CONFIRM_CARD_HOLD: card.confirm_card_hold,
        TwoPhaseAct.CANCEL_CARD_HOLD: card.cancel_card_hold,
        TwoPhaseAct.RECORD_DECISION: log.record_decision,
        TwoPhaseAct.COMPLETE_TRANSACTION: log.complete_transaction,
        TwoPhaseAct.RESOLVE_TRANSACTION: TransactionRecovery(engine, card).resolve_transaction,
        **return_activities(sessions, settings, provider, wallets),
    }


def return_activities(
    sessions: SessionFactory,
    settings: Settings,
    provider: PaymentProviderClient,
    wallets: WalletStore,
) -> dict[str, Callable[..., Any]]:
    """The ReturnSaga's steps and undos, by name, on the same sessions as the order saga's."""
    orders = ReturnOrderActivities(sessions)
    shipping = ReturnShippingActivities(sessions)
    inventory = ReturnInventoryActivities(sessions)
    refunds = ReturnRefundActivities(
        sessions, provider, provider_retry(settings.provider()), wallets
    )
    return {
        ReturnAct.OPEN_RETURN: orders.open_return,
        ReturnAct.CANCEL_RETURN: orders.cancel_return,
        ReturnAct.CLOSE_RETURN: orders.close_return,
        ReturnAct.RECEIVE_RETURN: shipping.receive_return,
        ReturnAct.REJECT_RETURN_RECEIPT: shipping.reject_return_receipt,
        ReturnAct.RESTOCK_RETURN: inventory.restock_return,
        ReturnAct.UNSTOCK_RETURN: inventory.unstock_return,
        ReturnAct.REFUND_RETURN_CARD: refunds.refund_return_card,
        ReturnAct.CREDIT_RETURN_WALLET: refunds.credit_return_wallet,
    }


def reactions(settings: Settings, provider: PaymentProviderClient) -> Reactions:
    """The choreographed order's handlers, on the process's provider client."""
    return Reactions(
        provider, provider_retry(settings.provider()), Sealer.from_keys(settings.card_keys())
    )


def provider_retry(provider: ProviderConfig) -> ProviderRetry:
    return ProviderRetry(
        Backoff(provider.retry_initial_s, provider.retry_cap_s), provider.step_deadline_s
    )


def card_participant(
    engine: AsyncEngine, settings: Settings, provider: PaymentProviderClient
) -> CardHoldParticipant:
    """The card's TCC participant; also what the recovery sweep resolves holds with."""
    return CardHoldParticipant(
        create_session_factory(engine),
        timedelta(seconds=settings.two_phase().card_hold_ttl_s),
        provider,
        provider_retry(settings.provider()),
        Sealer.from_keys(settings.card_keys()),
    )


def payment_provider_client(
    provider: ProviderConfig, meter: MetricMeter | None = None
) -> PaymentProviderClient:
    """The provider client a worker process shares, with its one breaker; close it on exit.

    With `meter`, the breaker's state is exported as a gauge.
    """
    name = "payment-provider"
    breaker = CircuitBreaker(
        name=name,
        **dataclasses.asdict(provider.breaker),
        on_state_change=BreakerGauge(meter, name) if meter is not None else None,
    )
    return PaymentProviderClient(
        provider.url,
        breaker,
        connect_timeout_s=provider.connect_timeout_s,
        read_timeout_s=provider.read_timeout_s,
        max_connections=provider.max_connections,
    )
