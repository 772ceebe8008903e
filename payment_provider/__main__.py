"""`python -m payment_provider`: the simulator on 127.0.0.1, port `SAGA_PAYMENT_PROVIDER_PORT`."""

from __future__ import annotations

import os

import uvicorn

from payment_provider.app import create_app

DEFAULT_PORT = 8100


def main() -> None:
    port = int(os.environ.get("SAGA_PAYMENT_PROVIDER_PORT", str(DEFAULT_PORT)))
    uvicorn.run(create_app(), host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main()
