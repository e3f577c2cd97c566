"""What the routes depend on, as small objects the tests can swap: the services bundle, the key
ring, and ``Annotated`` aliases for route signatures."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from service.api.errors import Unauthorized
from service.jobs.metrics import Metrics
from service.jobs.results import ResultStore
from service.jobs.store import JobStore
from service.jobs.submission import Submitter
from service.service_settings import ServiceSettings, key_owner


class KeyRing:
    """The accepted API keys, kept only as their hashes; a key's hash is the owner of its jobs."""

    def __init__(self, keys: list[str]) -> None:
        self._owners = frozenset(key_owner(k) for k in keys)

    def __len__(self) -> int:
        return len(self._owners)

    def owner_for(self, authorization: str | None) -> str:
        if not authorization:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("expected 'Authorization: Bearer <key>'")
        owner = key_owner(token)
        # Membership by hash; compare_digest keeps the final equality check constant-time.
        for known in self._owners:
            if hmac.compare_digest(known, owner):
                return owner
        raise Unauthorized("invalid API key")


@dataclass
class Services:
    settings: ServiceSettings
    store: JobStore
    results: ResultStore
    keys: KeyRing
    metrics: Metrics
    submitter: Submitter
    runner: Any = None  # service.jobs.runner.Runner in embedded mode

    def wake_runner(self) -> None:
        if self.runner is not None:
            self.runner.wake()


async def get_services(request: Request) -> Services:
    return request.app.state.services


# Declares the Bearer scheme in the OpenAPI document, so /docs has an "Authorize" button; the
# check itself is KeyRing's (auto_error=False: a missing key is our 401, in our error format).
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="APIKey", description="an API key: Authorization: Bearer <key>")


async def require_owner(request: Request, _: Annotated[Any, Depends(bearer_scheme)] = None) -> str:
    """The caller's owner id (hash of its key). Async: pure CPU, no thread hop."""
    services: Services = request.app.state.services
    return services.keys.owner_for(request.headers.get("authorization"))


ServicesDep = Annotated[Services, Depends(get_services)]
Owner = Annotated[str, Depends(require_owner)]
