"""A relay's id must fit the PostgreSQL lock session's application_name ('propbot:' + id, 63 bytes kept),
as an engine id must (api.settings.MAX_LEASE_ENGINE_ID): a standby relay names the lock's holder from it."""

from __future__ import annotations

import pytest

from adapters.nats import relay as relay_mod
from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.persistence.lease import APP_PREFIX


def test_a_long_hostname_still_gives_a_relay_id_that_fits_application_name(
    journal_url: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: the hostname went in whole (Linux allows 64 bytes), so the id PostgreSQL kept was cut short and
    # a standby's lock_holder.relay_id no longer matched the active relay's own relay_id
    monkeypatch.setattr(relay_mod.socket, "gethostname", lambda: "h" * 64)
    relay = OutboxRelay(RelayConfig(journal_url, "nats://127.0.0.1:1", source))
    assert len(APP_PREFIX + relay.relay_id) <= 63
    assert relay.relay_id.startswith("h" * 40 + ":")
