"""Alias of adapters.venue.matching for callers that import the engine by this name."""

from adapters.venue.matching import MatchingEngine

__all__ = ["MatchingEngine"]
