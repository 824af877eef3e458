"""`make security`: fuzz the whole OpenAPI of a real `propbot serve --profile paper` with schemathesis once
per role (viewer, trader, admin, auditor, no token), check the journal still verifies, run the journal
tamper matrix, and print one table. Exit 1 on any 5xx, a failed `propbot journal verify` or a failed
tamper test; undocumented status codes are reported (WARN) and fail only with --strict-status.

Not a pytest module (no test_ prefix): `python tests/security/run_security.py [--quick] [--max-examples N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROLES = ("viewer", "trader", "admin", "auditor")
TAMPER_FILES = (
    "tests/journal/test_tamper_damage.py",
    "tests/journal/test_tamper_checkpoint.py",
    "tests/journal/test_tamper_triggers.py",
    "tests/journal/test_tamper_approvals.py",
)
CHECKS = "not_a_server_error,status_code_conformance"
SERVER_ERROR = "ST101"  # schemathesis: 5xx status
UNDOCUMENTED = "ST103"  # schemathesis: status code missing from the operation's documented responses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"propbot serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("propbot serve did not become healthy")


def _add_operators(data: Path) -> dict[str, str]:
    """One operator per role via the CLI; its token is the last printed line. (All four are added before the
    first start: with operators present, serve does not create admin/trader and tokens.txt itself.)"""
    tokens = {}
    for role in ROLES:
        out = subprocess.run(
            [str(BIN / "propbot"), "operators", "add", role, "--role", role, "--data-dir", str(data)],
            check=True, capture_output=True, text=True, cwd=ROOT,
        ).stdout  # fmt: skip
        tokens[role] = out.strip().splitlines()[-1].strip()
    return tokens


def _fuzz(base: str, label: str, token: str | None, examples: int, reports: Path) -> dict[str, Any]:
    report, events = reports / f"{label}.json", reports / f"{label}.ndjson"
    cmd = [str(BIN / "schemathesis"), "run", f"{base}/openapi.json", "--checks", CHECKS,
           "--max-examples", str(examples), "--continue-on-failure", "--workers", "1", "--seed", "8",
           "--report", "json,ndjson", "--report-json-path", str(report),
           "--report-ndjson-path", str(events), "--report-dir", str(reports),
           "--warnings", "off", "--no-color"]  # fmt: skip
    if token is not None:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=reports)
    log = reports / f"{label}.log"
    log.write_text(run.stdout + run.stderr)
    if not report.exists():
        raise RuntimeError(
            f"schemathesis wrote no report for {label} (exit {run.returncode}), see:\n{log.read_text()}"
        )
    data = json.loads(report.read_text())
    failures = {f["code"]: f for f in data.get("failures", [])}
    other = {c: f for c, f in failures.items() if c not in (SERVER_ERROR, UNDOCUMENTED)}
    statuses, requests = _failed_responses(events)
    return {
        "statuses": statuses,
        "requests": requests,
        "cases": data["test_cases"]["generated"],
        "5xx": failures.get(SERVER_ERROR, {}).get("count", 0),
        "5xx_ops": failures.get(SERVER_ERROR, {}).get("operations", []),
        "undocumented": failures.get(UNDOCUMENTED, {}).get("count", 0),
        "undocumented_ops": failures.get(UNDOCUMENTED, {}).get("operations", []),
        "errors": len(data.get("errors", [])) + sum(f["count"] for f in other.values()),
        "log": log,
        "output": run.stdout,
    }


def _failed_responses(events: Path) -> tuple[dict[str, set[int]], list[str]]:
    """From the ndjson events: operation -> the undocumented statuses it answered, and each 5xx request."""
    statuses: dict[str, set[int]] = {}
    requests: list[str] = []
    if not events.exists():
        return statuses, requests
    for line in events.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if not scenario:
            continue
        rec = scenario["recorder"]
        for case_id, checks in rec.get("checks", {}).items():
            failed = {c["name"] for c in checks if c.get("status") == "failure"}
            response = (rec.get("interactions", {}).get(case_id) or {}).get("response") or {}
            status = response.get("status_code")
            if not failed or status is None:
                continue
            if "status_code_conformance" in failed and status < 500:
                statuses.setdefault(rec["label"], set()).add(status)
            if "not_a_server_error" in failed:
                case = rec.get("cases", {}).get(case_id, {}).get("value", {})
                parts = {k: case[k] for k in ("query", "path_parameters", "body") if case.get(k) is not None}
                requests.append(
                    f"{case.get('method')} {case.get('path')} {json.dumps(parts, default=str)} -> {status}"
                )
    return statuses, requests


def _tamper(reports: Path) -> dict[str, tuple[int, int]]:
    """Per file: (passed, failed-or-errored). Skips count as neither."""
    junit = reports / "tamper.xml"
    subprocess.run(
        [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *TAMPER_FILES],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    counts = dict.fromkeys(TAMPER_FILES, (0, 0))
    if not junit.exists():
        return dict.fromkeys(TAMPER_FILES, (0, 1))
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        path = next((f for f in TAMPER_FILES if Path(f).stem in module), None)
        if path is None:
            continue
        passed, failed = counts[path]
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" not in tags:
            passed += 1
        counts[path] = (passed, failed)
    for f, (p, x) in counts.items():
        if p + x == 0:  # collected nothing: an import error or a renamed file
            counts[f] = (0, 1)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI profile: --max-examples 5")
    parser.add_argument(
        "--max-examples", type=int, default=None, help="per operation (default 50, --quick 5)"
    )
    parser.add_argument("--strict-status", action="store_true", help="undocumented status codes fail too")
    args = parser.parse_args()
    examples = args.max_examples or (5 if args.quick else 50)
    started = time.monotonic()
    rows: list[tuple[str, str, str, str, str]] = []
    bad = False
    with tempfile.TemporaryDirectory(prefix="propbot-security-") as d:
        tmp = Path(d)
        data, reports = tmp / "data", tmp / "reports"
        data.mkdir()
        reports.mkdir()
        tokens: dict[str, str | None] = {**_add_operators(data), "no token": None}
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server_log = (tmp / "serve.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / "propbot"), "serve", "--profile", "paper", "--data-dir", str(data), "--port", str(port)],
            cwd=tmp, stdout=server_log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        results: dict[str, dict[str, Any]] = {}
        try:
            _wait_healthy(base, proc)
            for label, token in tokens.items():
                results[label] = _fuzz(base, label.replace(" ", "_"), token, examples, reports)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            server_log.close()
        for label, r in results.items():
            fail = r["5xx"] > 0 or r["errors"] > 0 or (args.strict_status and r["undocumented"] > 0)
            verdict = "FAIL" if fail else ("WARN" if r["undocumented"] else "ok")
            bad |= fail
            rows.append((f"fuzz {label}", str(r["cases"]), str(r["5xx"]), str(r["undocumented"]), verdict))
        verify = subprocess.run(
            [str(BIN / "propbot"), "journal", "verify", "--profile", "paper", "--data-dir", str(data)],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        bad |= verify.returncode != 0
        rows.append(("journal verify", "-", "-", "-", "ok" if verify.returncode == 0 else "FAIL"))
        for path, (passed, failed) in _tamper(reports).items():
            bad |= failed > 0
            rows.append((f"tamper {Path(path).stem}", f"{passed + failed}", "-", "-",
                         "ok" if failed == 0 else f"FAIL ({failed} failed)"))  # fmt: skip

        header = ("role/check", "cases", "5xx", "undocumented", "verdict")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        print(f"security check, --max-examples {examples}, checks {CHECKS}")
        print(line.format(*header))
        print(line.format(*("-" * w for w in widths)))
        for row in rows:
            print(line.format(*row))
        for label, r in results.items():
            if r["statuses"]:
                seen = (f"{op} {sorted(codes)}" for op, codes in sorted(r["statuses"].items()))
                print(f"undocumented status codes ({label}): {'; '.join(seen)}")
            elif r["undocumented_ops"]:
                print(f"undocumented status codes ({label}): {', '.join(r['undocumented_ops'])}")
        for label, r in results.items():
            if r["5xx"] or r["errors"]:
                print(f"\n== {label}: server errors in {', '.join(r['5xx_ops']) or '-'}; the requests:")
                print("\n".join(r["requests"]) or "(none recorded)")
                print("schemathesis output:\n" + r["output"])
        if verify.returncode != 0:
            print("\n== journal verify:\n" + verify.stdout + verify.stderr)
    print(f"wall time {time.monotonic() - started:.0f}s; {'FAILED' if bad else 'passed'}")
    failed = sum(1 for row in rows if row[-1] not in ("ok", "WARN"))
    # The plain closing line a CI log reader counts (one line per table row: a fuzz run, verify, a tamper file)
    print(f"security: {len(rows) - failed} passed, {failed} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
