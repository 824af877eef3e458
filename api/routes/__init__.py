"""Routers: live (the seed's /api/live/*), session, audit, status, health. They see services only."""

__all__: list[str] = []
