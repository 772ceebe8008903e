"""Which queue each activity runs on, and how `worker.py` is told which to serve."""

from __future__ import annotations

import pytest

from domain.activities import Act, TwoPhaseAct
from domain.bulkheads import BULKHEAD_OF, Bulkhead, queue_for
from domain.returns import ReturnAct
from wiring.activities import all_activities
from wiring.root import parse_bulkheads
from worker import main


def test_every_activity_the_workers_register_has_a_bulkhead():
    names = {
        value
        for holder in (Act, TwoPhaseAct, ReturnAct)
        for key, value in vars(holder).items()
        if key.isupper()
    }
    assert names == set(BULKHEAD_OF)


def test_the_registered_activities_are_exactly_the_mapped_ones(tmp_path):
    # all_activities only builds objects; nothing connects until an activity runs.
    from db.engine import create_engine
    from settings import Settings
    from wiring.activities import payment_provider_client

    # The data dir holds the dev card token key the payment activities read.
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", data_dir=tmp_path)
    engine = create_engine(settings.database_target)
    assert set(
        all_activities(engine, settings, payment_provider_client(settings.provider()))
    ) == set(BULKHEAD_OF)


def test_queues_derive_from_the_workflow_queue():
    assert queue_for(Act.CHARGE_PAYMENT, "orders") == "orders-payments"
    assert queue_for(TwoPhaseAct.PREPARE_STOCK, "q1") == "q1-inventory"
    assert queue_for(Act.CREATE_SHIPMENT, "q1") == "q1-shipping"
    assert queue_for(Act.CREATE_ORDER, "q1") == "q1"
    assert queue_for("something_new", "q1") == "q1"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], list(Bulkhead)),
        (["all"], list(Bulkhead)),
        (["payments"], [Bulkhead.PAYMENTS]),
        (["payments,inventory", "payments"], [Bulkhead.PAYMENTS, Bulkhead.INVENTORY]),
        ([" shipping , "], [Bulkhead.SHIPPING]),
    ],
)
def test_bulkhead_choices(values, expected):
    assert parse_bulkheads(values) == expected


def test_an_unknown_bulkhead_is_a_message_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--bulkhead", "billing"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "unknown bulkhead 'billing'" in err and "payments" in err
    assert "Traceback" not in err


def test_a_deployment_without_a_build_id_is_a_message(capsys, monkeypatch):
    monkeypatch.delenv("SAGA_WORKER_BUILD_ID", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["--deployment", "saga"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "SAGA_WORKER_BUILD_ID" in err and "Traceback" not in err


def test_versioned_settings_make_one_deployment_version_for_every_bulkhead():
    from settings import Settings
    from wiring.root import deployment_config

    assert deployment_config(Settings().worker().deployment) is None
    config = deployment_config(
        Settings(worker_deployment_name="saga", worker_build_id="b7").worker().deployment
    )
    assert config is not None and config.use_worker_versioning
    assert (config.version.deployment_name, config.version.build_id) == ("saga", "b7")
