"""The /metrics exposition by prometheus-client: one `CollectorRegistry` per runtime (never the global
registry: tests run many apps in one process), the SENT→answer histogram as a library `Histogram` fed by
the engine's latency observers, and a collector that reads everything else from the running engine and
the /api/status snapshot at scrape time (the engine keeps plain counters and imports no metrics library).

Names and units follow Prometheus' conventions: counters end in `_total`, durations are `_seconds`,
state is a 0/1 gauge per label value; status levels are 0 OK, 1 WARN, 2 ERROR. docs/api.md lists them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.audit_trail import UNJOURNALED
from engine.fsm.session_table import SessionState

if TYPE_CHECKING:
    from api.runtime import Runtime

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LEVEL = {"OK": 0, "WARN": 1, "ERROR": 2}
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _level(value: object) -> int:
    return LEVEL.get(str(value), 2)  # an unknown level is treated as the worst


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class _RuntimeCollector(Collector):
    """Everything derived from the runtime's state, read when Prometheus scrapes."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.status: dict[str, Any] = {}  # the /api/status body of this scrape (Exposition.render sets it)

    def collect(self) -> Iterator[Metric]:
        runtime, engine = self._runtime, self._runtime.engine
        m, writer = engine.writer.metrics, engine.writer
        transitions = CounterMetricFamily(
            "propbot_transitions", "Journal rows appended by this process, by stream, trigger and new state.",
            labels=["stream", "trigger", "to_state"],
        )  # fmt: skip
        for (stream, trigger, to_state), n in sorted(m.transitions.items()):
            transitions.add_metric([stream, trigger, to_state], n)
        yield transitions
        rejects = CounterMetricFamily(
            "propbot_order_rejects", "Orders refused (locally or by the venue), by reason.", labels=["reason"]
        )
        for reason, n in sorted(m.refusals.items()):
            rejects.add_metric([reason], n)
        yield rejects
        yield CounterMetricFamily(
            "propbot_journal_commits", "Journal transactions committed by the group-commit writer.",
            value=writer.commits,
        )  # fmt: skip
        yield CounterMetricFamily(
            "propbot_journal_rows", "Journal rows committed by this process.", value=writer.rows
        )
        unjournaled = CounterMetricFamily(
            "propbot_calls_unjournaled", "Calls with no audit row: no operator (401), throttled (429), journal "
            "unwritable.", labels=["reason"],
        )  # fmt: skip
        for reason, n in sorted(UNJOURNALED.items()):
            unjournaled.add_metric([reason], n)
        yield unjournaled
        yield _gauge("propbot_open_orders", "Orders the engine holds open.", len(engine.orders.open))
        yield _gauge(
            "propbot_ready", "1 once the journal is verified and the venue reconciled.", runtime.ready
        )
        roles = GaugeMetricFamily("propbot_writer_role", "1 for this engine's role for its account (docs/scale-out.md).",
                                  labels=["role"])  # fmt: skip
        for role in ("ACTIVE", "STANDBY", "LOST"):
            roles.add_metric([role], 1 if runtime.role == role else 0)
        yield roles
        yield from self._session(runtime)
        yield from self._journal(runtime)
        yield from self._components()
        yield from self._sources(runtime)

    @staticmethod
    def _session(runtime: Runtime) -> Iterator[Metric]:
        session = runtime.engine.sessions.session
        current = session.state if session is not None else None
        states = GaugeMetricFamily("propbot_session_state", "1 for the session's current state, 0 for the others.",
                                   labels=["state"])  # fmt: skip
        for state in SessionState:
            states.add_metric([state.value], 1 if state is current else 0)
        yield states
        yield _gauge(
            "propbot_session_on_hold", "1 while the session is on HOLD.", current is SessionState.HOLD
        )

    @staticmethod
    def _journal(runtime: Runtime) -> Iterator[Metric]:
        error = runtime.start_error
        yield _gauge(
            "propbot_journal_verify_failing", "1 when the journal did not verify at start-up (journal_corrupt).",
            error is not None and error.reason == "journal_corrupt",
        )  # fmt: skip
        yield _gauge(
            "propbot_journal_self_check_failing", "1 once the running self-check found the journal changed "
            "under the engine (rows deleted, rewritten or appended by someone else).",
            runtime.engine.self_check_problem is not None,
        )  # fmt: skip

    def _components(self) -> Iterator[Metric]:
        components = self.status.get("components", {})
        family = GaugeMetricFamily("propbot_component_status", "Each /api/status component: 0 OK, 1 WARN, 2 ERROR.",
                                   labels=["component"])  # fmt: skip
        for name, comp in sorted(components.items()):
            family.add_metric([name], _level(comp.get("status")))
        yield family
        if self.status:
            yield _gauge(
                "propbot_status",
                "/api/status overall: 0 OK, 1 WARN, 2 ERROR.",
                _level(self.status.get("status")),
            )

    @staticmethod
    def _sources(runtime: Runtime) -> Iterator[Metric]:
        rate = runtime.status_sources.get("rate_limit")
        if rate is not None:
            data = rate()
            yield _gauge(
                "propbot_rate_limit_level",
                "Rate-limit governor: 0 OK, 1 WARN, 2 ERROR.",
                _level(data.get("level")),
            )
            used = GaugeMetricFamily("propbot_rate_limit_used", "Used weight or order count per Binance limit window.",
                                     labels=["window"])  # fmt: skip
            limit = GaugeMetricFamily("propbot_rate_limit_limit", "The limit of each Binance limit window.",
                                      labels=["window"])  # fmt: skip
            for window, n in sorted(data.get("used", {}).items()):
                used.add_metric([window], n)
            for window, n in sorted(data.get("limits", {}).items()):
                limit.add_metric([window], n)
            yield used
            yield limit
        feed = runtime.status_sources.get("market_data")
        if feed is not None:
            data = feed()
            yield _gauge("propbot_market_data_connected", "1 while the market-data stream is connected.",
                         bool(data.get("connected")))  # fmt: skip
            age = data.get("last_message_age_s")
            if isinstance(age, int | float):
                yield _gauge(
                    "propbot_market_data_message_age_seconds",
                    "Seconds since the last market-data message.",
                    age,
                )
        relay = runtime.status_sources.get("outbox_relay")
        if relay is not None:  # the `relay:` config section: the outbox relay runs in this process
            yield from _relay(relay())
        stream = runtime.status_sources.get("user_stream")
        if stream is not None:
            data = stream()
            yield _gauge("propbot_user_stream_connected", "1 while the user data stream subscription is live.",
                         bool(data.get("connected")))  # fmt: skip
            yield _gauge(
                "propbot_user_stream_level",
                "User data stream: 0 OK, 1 WARN, 2 ERROR.",
                _level(data.get("level")),
            )
            yield CounterMetricFamily("propbot_user_stream_gaps", "Gaps seen in the user data stream (missed events).",
                                      value=data.get("gaps", 0))  # fmt: skip
            yield CounterMetricFamily("propbot_user_stream_events", "Events received on the user data stream.",
                                      value=data.get("events", 0))  # fmt: skip


def _relay(st: dict[str, Any]) -> Iterator[Metric]:
    """The same series as the relay's own --status-port /metrics (engine.outbox.relay_metrics)."""
    labels = {"source": str(st["source"])}
    yield _gauge("propbot_relay_cursor", "Last journal seq JetStream acknowledged.", st["cursor"], labels)
    yield _gauge("propbot_relay_journal_last_seq", "The journal's last seq.", st["journal_last_seq"], labels)
    yield _gauge(
        "propbot_relay_lag_rows", "Journal rows not yet acknowledged by JetStream.", st["lag_rows"], labels
    )
    yield _gauge("propbot_relay_lag_seconds", "Age of the oldest journal row not yet acknowledged.",
                 st["lag_seconds"], labels)  # fmt: skip
    published = CounterMetricFamily(
        "propbot_relay_published", "Rows JetStream acknowledged.", labels=["source"]
    )
    published.add_metric([labels["source"]], st["published_total"])
    yield published
    yield _gauge(
        "propbot_relay_connected", "1 while the relay is connected to NATS.", int(st["connected"]), labels
    )
    yield _gauge(
        "propbot_relay_up", "1 while no relay component failed recently.", int(st["status"] == "OK"), labels
    )
    yield _gauge("propbot_relay_active", "1 while this relay holds its source's lock and publishes, 0 as a standby.",
                 int(st.get("role") == "ACTIVE"), labels)  # fmt: skip


class Exposition:
    """The registry of one runtime: its histogram is fed from the start, the rest is read when scraped."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.send_to_answer = Histogram(
            "propbot_send_to_answer_seconds",
            "From just before an order request is sent (its SENT row durable) to the venue's answer journaled.",
            buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        runtime.engine.writer.metrics.send_latency_observers.append(self.send_to_answer.observe)
        self._collector = _RuntimeCollector(runtime)
        self.registry.register(self._collector)

    def render(self, status: dict[str, Any]) -> bytes:
        """The text exposition, with `status` (this scrape's /api/status body) for the component gauges.
        Synchronous on the loop: it reads state the loop mutates, so nothing changes mid-scrape."""
        self._collector.status = status
        try:
            return generate_latest(self.registry)
        finally:
            self._collector.status = {}
