"""sagactl answers bad input with one line naming what to fix, never a traceback."""

from __future__ import annotations

import pytest

from stack.cli import main
from stack.ports import free_port


def test_bad_setting_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("SAGA_API_PORT", "abc")

    assert main(["run"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("sagactl run: SAGA_API_PORT:")
    assert "'abc'" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreachable_database_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/none")

    assert main(["migrate"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("sagactl migrate:")
    assert len(err.strip().splitlines()) == 1


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])

    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_redriving_something_not_an_event_id_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["dead-letters", "--redrive", "not-an-id"])

    assert exited.value.code == 2
    assert "not an event id (a UUID): 'not-an-id'" in capsys.readouterr().err


def test_worker_hand_over_without_a_running_stack_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SAGA_DATA_DIR", str(tmp_path))

    assert main(["worker", "stop"]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"sagactl worker: no `sagactl run` is listening on {tmp_path}")
    assert len(err.strip().splitlines()) == 1
