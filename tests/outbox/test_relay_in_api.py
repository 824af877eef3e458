"""With a `relay:` config section the outbox relay runs inside the API process: its lag and position are
a component of /api/status and propbot_relay_* series of /metrics, and an order's rows reach JetStream."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.server import ApiServer, paper_settings
from tests.outbox.broker import Broker


def test_the_relay_in_the_api_process_reports_in_status_and_metrics(
    tmp_path: Path, nats_broker: Broker, source: str
) -> None:
    settings = paper_settings(tmp_path / "data", relay={"nats_url": nats_broker.url, "source": source})
    assert settings.relay_nats_url == nats_broker.url
    with ApiServer(settings) as api:
        viewer = api.client("viewer")
        deadline = time.monotonic() + 60
        while True:
            relay = viewer.get("/api/status").json()["components"].get("outbox_relay")
            detail = relay["detail"] if relay else {}
            if (
                relay
                and relay["status"] == "OK"
                and detail["journal_last_seq"] > 0
                and detail["lag_rows"] == 0
            ):
                break
            assert time.monotonic() < deadline, relay
            time.sleep(0.05)
        metrics = viewer.get("/metrics").text
    detail = relay["detail"]
    assert (detail["source"], detail["connected"]) == (source, True)
    assert detail["cursor"] == detail["journal_last_seq"] > 0  # the session's rows, published
    assert f'propbot_relay_lag_rows{{source="{source}"}} 0' in metrics
    assert f'propbot_relay_cursor{{source="{source}"}} ' in metrics


def test_without_the_section_there_is_no_relay(tmp_path: Path) -> None:
    with ApiServer(paper_settings(tmp_path / "data")) as api:
        status = api.client("viewer").get("/api/status").json()
    assert "outbox_relay" not in status["components"]
