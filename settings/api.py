"""The API: where it listens, who may call it, and the keys that keep secrets out of histories."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr

from settings.servers import LOOPBACK


class ApiFields(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    api_host: str = LOOPBACK
    """Where the API listens."""
    api_port: int = 8000
    """The API's port."""
    environment: Literal["dev", "production"] = "dev"
    """`production`: each program refuses to start without its credentials (API keys,
    `SAGA_PAYLOAD_CODEC_KEY`, `SAGA_CARD_TOKEN_KEY`; docs/security.md); `dev`: the API is
    open unless keys are set."""
    # JSON lists, e.g. SAGA_API_ORDER_KEYS='["k1"]', one per role (api.roles).
    api_read_keys: list[SecretStr] = Field(default_factory=list)
    """API keys that may read (JSON list)."""
    api_order_keys: list[SecretStr] = Field(default_factory=list)
    """API keys that may also place and cancel orders (JSON list)."""
    api_admin_keys: list[SecretStr] = Field(
        default_factory=list,
        validation_alias=AliasChoices("SAGA_API_ADMIN_KEYS", "SAGA_API_KEYS"),
    )
    """API keys that may also add store credit and decode payloads (JSON list;
    `SAGA_API_KEYS`, of old, is read as these)."""
    api_max_body_bytes: int = 65536
    """Larger request bodies are answered 413."""
    api_price_cache_s: float = Field(default=5.0, ge=0)
    """How long the API keeps a catalogue price (api.catalog); 0 reads the catalogue for
    every order."""
    payload_codec_key: SecretStr | None = None
    """Base64 of 32 bytes: workflow payloads are AES-256-GCM encrypted (security.codec), and
    the API serves a codec endpoint for the Web UI."""
    payload_codec_key_id: str = "k1"
    """The payload key's id, written beside each payload for rotation."""
    # In dev, unset, a key kept in <data_dir>/card-token.key (security.card_key).
    card_token_key: SecretStr | None = None
    """Base64 of 32 bytes: card tokens are sealed to their order before a saga starts
    (security.sealed), so no codec key reveals them; required outside dev."""
    card_token_key_id: str = "t1"
    """The card token key's id."""
    codec_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"]
    )
    """Who may call the codec endpoint from a browser (JSON list; default: the dev UI)."""
