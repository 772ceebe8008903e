"""Guards for calls to downstream services: fail fast while a dependency is down."""
