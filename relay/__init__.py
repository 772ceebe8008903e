"""The outbox relay: committed outbox rows to NATS JetStream, at least once, in order."""
