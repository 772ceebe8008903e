"""Recorded workflow histories: the corpus replay tests run every change against.

`sagactl record-histories` runs each saga path (`cases.py`) on a throwaway
embedded stack and writes its histories under `tests/histories/<workflow>/`;
`sagactl fetch-history` copies one from a running server. Files hold the
history exactly as the Replayer reads it (`WorkflowHistory.to_json()`).
"""
