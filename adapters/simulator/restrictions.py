"""GET /sapi/v1/account/apiRestrictions, which live Binance has and Spot Testnet does not (Binance's wallet API; the Spot docs do not cover /sapi).

The simulator starts testnet-like: the path answers 404 like any unknown endpoint. Switching it on
(`POST /_sim/api_restrictions` with a JSON object, or `create_simulator_app(api_restrictions=...)`) makes
it a SIGNED USER_DATA endpoint answering DEFAULT_RESTRICTIONS (a well-configured trading key: IP
restricted, spot trading on, withdrawals off) overlaid with the fields given. `DELETE` switches it off.
"""

from __future__ import annotations

from typing import Any

from adapters.simulator.state import SimulatorState

_FLAGS = (
    "ipRestrict",
    "enableReading",
    "enableSpotAndMarginTrading",
    "enableWithdrawals",
    "enableInternalTransfer",
    "permitsUniversalTransfer",
    "enableMargin",
    "enableFutures",
    "enableVanillaOptions",
    "enablePortfolioMarginTrading",
    "enableFixApiTrade",
    "enableFixReadOnly",
)
_TIMES = ("createTime", "tradingAuthorityExpirationTime")  # epoch ms; the second one is optional
_ON_BY_DEFAULT = frozenset({"ipRestrict", "enableReading", "enableSpotAndMarginTrading"})
DEFAULT_RESTRICTIONS: dict[str, bool] = {flag: flag in _ON_BY_DEFAULT for flag in _FLAGS}


class RestrictionsSpecError(ValueError):
    """The body sent to /_sim/api_restrictions is not an apiRestrictions object."""


def build(spec: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The endpoint's answer: the defaults, `createTime` = now, overlaid with `spec`.

    Raises:
        RestrictionsSpecError: an unknown field, a non-boolean flag or a bad time.
    """
    # Binance lists ipRestrict and createTime first; the flags keep their default values here
    body: dict[str, Any] = {"ipRestrict": True, "createTime": now_ms, **DEFAULT_RESTRICTIONS}
    for key, value in spec.items():
        if key in _FLAGS:
            if not isinstance(value, bool):
                raise RestrictionsSpecError(f"{key} must be true or false, was {value!r}")
        elif key in _TIMES:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RestrictionsSpecError(f"{key} must be epoch milliseconds, was {value!r}")
        else:
            raise RestrictionsSpecError(f"unknown apiRestrictions field {key!r}")
        body[key] = value
    return body


def available(state: SimulatorState) -> bool:
    return state.api_restrictions is not None


def api_restrictions(state: SimulatorState, p: dict[str, str]) -> Any:
    """The handler, reached only while `available` (signature and timestamp already checked)."""
    assert state.api_restrictions is not None
    return dict(state.api_restrictions)
