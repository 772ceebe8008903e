"""What the relay and the consumers agree on, below both of them.

`wire`: the stream's name, subjects, headers and the envelope; `stream`: the
EVENTS stream's configuration, created by the relay and awaited by consumers;
`connection`: the one way a process connects to NATS. Neither relay nor
consumers import each other: they meet here.
"""
