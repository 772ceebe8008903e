"""The dual-write problem, shown: one restock written three ways, each crashable between its writes.

A restock raises a product's stock (and what it received) and announces
`StockReceived` on JetStream. Written naively — two writes to two systems —
a crash between them leaves the database and the broker disagreeing:

  commit-then-publish   the stock is raised, the event is lost
  publish-then-commit   the event is out, the stock was never raised (a ghost)
  outbox                stock and outbox row commit together; the relay
                        publishes it later, so a crash loses nothing

`python -m dual_write MODE SKU QUANTITY --request-id ID [--crash]` runs one
restock; with --crash the process SIGKILLs itself between the two writes.
"""
