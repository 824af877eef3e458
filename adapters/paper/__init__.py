"""The in-process paper venue: engine.ports.ExchangePort on adapters.venue's matching engine."""

from adapters.paper.exchange import PaperExchange, to_engine_error

__all__ = ["PaperExchange", "to_engine_error"]
