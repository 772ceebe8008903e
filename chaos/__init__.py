"""`make chaos`: load while workers, the relay, PostgreSQL and Temporal die, then the audit."""
