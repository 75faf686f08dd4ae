"""The HTTP layer: `make_app()`, auth, problem details, one routes module per user group."""

from gateway.web.app import make_app

__all__ = ["make_app"]
