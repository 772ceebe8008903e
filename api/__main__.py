"""`python -m api`: serve the API on the host and port from settings."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        # Bounded shutdown: in-flight requests finish, then the process exits.
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
