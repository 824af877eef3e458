"""PropBot's HTTP API, CLI and composition root.

Entry points: `api.app.create_app(settings)`, `api.settings.load_settings(...)`, `api.cli.main()`
(the `propbot` console script). Only `api.bootstrap` imports the adapters. Nothing is imported eagerly
here, so `import api.settings` never pulls in FastAPI or a venue.
"""

__all__: list[str] = []
