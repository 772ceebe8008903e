"""`python -m api`: serve the API on the host and port from settings."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from observability.logs import configure as configure_logging
from observability.tracing import configure as configure_tracing
from startup import load_settings
from wiring.order_hooks import order_log_fields


def main() -> None:
    settings = load_settings("python -m api", needs="api")
    configure_logging(settings.logs(), "api", correlate=order_log_fields)
    configure_tracing(settings.tracing(), "api")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        # Through our handler (JSON, redaction); our middleware logs each request.
        log_config=None,
        access_log=False,
        # Bounded shutdown: in-flight requests finish, then the process exits.
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
