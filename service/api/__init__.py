"""The HTTP API: the only part of railsight that knows HTTP. Build it with ``create_app(settings)``."""

from service.api.app import build_services, create_app

__all__ = ["build_services", "create_app"]
