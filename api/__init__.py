"""The HTTP gateway: starts, queries and cancels order sagas."""
