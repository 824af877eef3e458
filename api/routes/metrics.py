"""GET /metrics: Prometheus text exposition of the engine's counters and the venue components."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.audit_trail import UNJOURNALED
from api.deps import Reader, RuntimeDep
from api.runtime import Runtime

router = APIRouter(tags=["status"])
_LEVEL = {"OK": 0, "WARN": 1, "ERROR": 2}


def _labels(**kv: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in kv.items()
    )
    return "{" + inner + "}"


def render(runtime: Runtime) -> str:
    engine = runtime.engine
    m = engine.writer.metrics
    lines = ["# HELP propbot_transitions_total Journalled transitions by stream, trigger and new state.",
             "# TYPE propbot_transitions_total counter"]  # fmt: skip
    lines += [f"propbot_transitions_total{_labels(stream=s, trigger=t, to_state=to)} {n}"
              for (s, t, to), n in sorted(m.transitions.items())]  # fmt: skip
    lines += ["# HELP propbot_order_rejects_total Orders refused (locally or by the venue) by reason.",
              "# TYPE propbot_order_rejects_total counter"]  # fmt: skip
    lines += [f"propbot_order_rejects_total{_labels(reason=r)} {n}" for r, n in sorted(m.refusals.items())]
    h = m.send_latency
    lines += ["# HELP propbot_send_to_answer_seconds From the SENT row to the venue's answer being journalled.",
              "# TYPE propbot_send_to_answer_seconds histogram"]  # fmt: skip
    lines += [f"propbot_send_to_answer_seconds_bucket{_labels(le=b)} {n}" for b, n in h.cumulative()]
    lines += [
        f"propbot_send_to_answer_seconds_sum {h.sum}",
        f"propbot_send_to_answer_seconds_count {h.count}",
    ]
    lines += ["# TYPE propbot_open_orders gauge", f"propbot_open_orders {len(engine.orders.open)}",
              "# TYPE propbot_journal_commits_total counter", f"propbot_journal_commits_total {engine.writer.commits}"]  # fmt: skip
    lines += ["# HELP propbot_calls_unjournaled_total Calls with no audit row: no operator (401), throttled (429).",
              "# TYPE propbot_calls_unjournaled_total counter"]  # fmt: skip
    lines += [
        f"propbot_calls_unjournaled_total{_labels(reason=r)} {n}" for r, n in sorted(UNJOURNALED.items())
    ]
    lines += ["# HELP propbot_writer_role 1 for this engine's role for its account: ACTIVE, STANDBY or LOST.",
              "# TYPE propbot_writer_role gauge", f"propbot_writer_role{_labels(role=runtime.role)} 1"]  # fmt: skip
    session = engine.sessions.session
    if session is not None:
        lines += [
            "# HELP propbot_session_state 1 for the session's current state.",
            "# TYPE propbot_session_state gauge",
        ]
        lines.append(f"propbot_session_state{_labels(state=session.state.value)} 1")
    rate = runtime.status_sources.get("rate_limit")
    if rate is not None:
        data = rate()
        lines += [
            "# TYPE propbot_rate_limit_level gauge",
            f"propbot_rate_limit_level {_LEVEL.get(str(data.get('level')), 2)}",
        ]
        lines += ["# HELP propbot_rate_limit_used Used weight / order count per Binance limit window.",
                  "# TYPE propbot_rate_limit_used gauge"]  # fmt: skip
        lines += [
            f"propbot_rate_limit_used{_labels(window=w)} {n}" for w, n in sorted(data.get("used", {}).items())
        ]
    feed = runtime.status_sources.get("market_data")
    if feed is not None:
        data = feed()
        age = data.get("last_message_age_s")
        if isinstance(age, int | float):
            lines += [
                "# TYPE propbot_stream_message_age_seconds gauge",
                f"propbot_stream_message_age_seconds {age}",
            ]
    return "\n".join(lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(op: Reader, runtime: RuntimeDep) -> PlainTextResponse:
    """Prometheus metrics (text exposition format 0.0.4)."""
    return PlainTextResponse(render(runtime), media_type="text/plain; version=0.0.4")
