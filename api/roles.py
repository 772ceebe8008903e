"""What each API key may do: a role per key, a role per route.

Roles are ordered, each allowing what the one below it does:

- read: every GET (orders, their events, products, wallets);
- orders: place and cancel orders;
- admin: add store credit, and the codec server (it decrypts every payload).

Keys come from `SAGA_API_READ_KEYS`, `SAGA_API_ORDER_KEYS` and
`SAGA_API_ADMIN_KEYS` (`SAGA_API_KEYS`, the one full-access list of old, is
read as admin keys). With no key configured in dev mode, every caller is an
admin: the API is open on loopback for development only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import IntEnum

from fastapi import Depends, Request

from api.problems import Problem
from settings_slices import ApiAccess

SCOPE_KEY = "saga.role"


class Role(IntEnum):
    READ = 1
    ORDERS = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ROLE_VARIABLES = {
    Role.READ: "SAGA_API_READ_KEYS",
    Role.ORDERS: "SAGA_API_ORDER_KEYS",
    Role.ADMIN: "SAGA_API_ADMIN_KEYS",
}


def keys_by_role(access: ApiAccess) -> dict[Role, list[bytes]]:
    lists = {
        Role.READ: access.read_keys,
        Role.ORDERS: access.order_keys,
        Role.ADMIN: access.admin_keys,
    }
    return {role: [k.get_secret_value().encode() for k in keys] for role, keys in lists.items()}


# Async: FastAPI runs a plain `def` dependency on a thread of its pool, a hop per request.
RoleCheck = Callable[[Request], Awaitable[None]]


def require(role: Role) -> RoleCheck:
    """A route dependency: 403 unless access control found a key of `role` or above."""

    async def check(request: Request) -> None:
        held = request.scope.get(SCOPE_KEY)
        if isinstance(held, Role) and held >= role:
            return
        # No role at all (access control not in front of this route) refuses too.
        has = f"this key has the {held.label} role" if isinstance(held, Role) else "no role"
        raise Problem(
            403,
            "Forbidden",
            f"{request.method} {request.url.path} needs the {role.label} role; {has}"
            f" (a key from {ROLE_VARIABLES[role]} may)",
            code="forbidden",
            role=role.label,
        )

    check.role = role  # type: ignore[attr-defined]  # read by the route audit
    return check


def required_role(dependency: object) -> Role | None:
    role = getattr(dependency, "role", None)
    return role if isinstance(role, Role) else None


# For `@router.get(..., dependencies=READERS)`: every route names its role.
READERS = [Depends(require(Role.READ))]
ORDER_TAKERS = [Depends(require(Role.ORDERS))]
ADMINS = [Depends(require(Role.ADMIN))]
