"""The embedded dev stack: Temporal, PostgreSQL and NATS as child processes, plus `sagactl`."""
