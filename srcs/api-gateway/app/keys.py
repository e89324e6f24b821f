"""API keys: when GATEWAY_API_KEYS names some, every request that changes state must carry one."""

from __future__ import annotations

import hashlib
import hmac

from crud_common.errors import ApiError
from pydantic import SecretStr

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def require_key(method: str, x_api_key: str | None, authorization: str | None,
                keys: tuple[SecretStr, ...]) -> None:
    """A 401 for a state-changing request without a valid key (`X-API-Key: <key>` or `Authorization: Bearer
    <key>`); nothing when no key is configured or the method only reads."""
    if not keys or method not in STATE_CHANGING_METHODS:
        return
    presented = x_api_key
    if presented is None and authorization and authorization[:7].lower() == "bearer ":
        presented = authorization[7:].strip()
    if presented is None or not _matches(presented, keys):
        raise ApiError(401, "this request changes state: send a valid API key (X-API-Key or Authorization: Bearer)",
                       headers={"WWW-Authenticate": 'Bearer realm="crud-master"'})


def _matches(presented: str, keys: tuple[SecretStr, ...]) -> bool:
    # Digests of equal length, every key compared: the time taken says nothing of how close a guess was, nor of
    # which key it was close to.
    digest = hashlib.sha256(presented.encode()).digest()
    matches = [hmac.compare_digest(digest, hashlib.sha256(key.get_secret_value().encode()).digest()) for key in keys]
    return any(matches)
