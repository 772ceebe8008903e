"""Where corpus files live and how one is read or written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import WorkflowHistory

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "histories"


@dataclass(frozen=True)
class Recorded:
    path: Path
    history: WorkflowHistory

    @property
    def workflow_type(self) -> str:
        first = self.history.events[0].workflow_execution_started_event_attributes
        return str(first.workflow_type.name)


def save(
    history: WorkflowHistory, case: str, corpus: Path = CORPUS, overwrite: bool = False
) -> Path:
    """Write one history as `<corpus>/<case>.json`; `case` is `<workflow dir>/<name>`.

    An existing file is kept unless `overwrite`: it is the record of sagas an
    earlier release started, and those must keep replaying.
    """
    path = corpus / f"{case}.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: record under another --tag, or --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Indented: a changed history reads as a diff in review.
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    return path


def load_all(corpus: Path = CORPUS) -> list[Recorded]:
    return [
        Recorded(path, WorkflowHistory.from_json(path.stem, path.read_text()))
        for path in sorted(corpus.glob("*/*.json"))
    ]
