"""operators.json: parallel `propbot operators add` processes all persist, a rotation revokes the old
token at once, a group/world-writable store is refused, and `operators list` never shows a secret."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.auth import OperatorError, OperatorStore
from api.cli import main
from tests.e2e.server import ApiServer, paper_settings

# Each child waits for the `go` file, so all ten read-modify-write at once, and stalls 0.2 s before its
# write: without the store's lock the later writes would drop the others' operators
_CLI = """
import sys, time, pathlib
import api.auth
from api.cli import main
write = api.auth.write_private
api.auth.write_private = lambda path, text: (time.sleep(0.2), write(path, text))[1]
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    # hermetic: none of the caller's PropBot variables or .env
    return {k: v for k, v in os.environ.items() if not k.startswith(("PROPBOT_", "EXCHANGE_", "SAFE_MODE"))}


def _spawn(data_dir: Path, operator_id: str, role: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", _CLI, str(data_dir / "go"), "operators", "add", operator_id, "--role", role]
    argv += ["--data-dir", str(data_dir)]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=data_dir
    )


def _tokens(procs: dict[str, subprocess.Popen[str]], data_dir: Path) -> dict[str, str]:
    time.sleep(1.0)  # let every child import and reach the wait
    (data_dir / "go").touch()
    out = {}
    for oid, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        out[oid] = stdout.splitlines()[-1]
    return out


def test_ten_parallel_adds_all_persist(tmp_path: Path) -> None:
    procs = {f"op{i}": _spawn(tmp_path, f"op{i}", "viewer") for i in range(10)}
    tokens = _tokens(procs, tmp_path)
    store = OperatorStore(tmp_path / "operators.json")
    assert sorted(op.id for op in store.operators()) == sorted(procs)
    for oid, token in tokens.items():
        assert store.authenticate(token) == store.authenticate(token) is not None
        assert store.authenticate(token).id == oid  # type: ignore[union-attr]
    assert stat.S_IMODE((tmp_path / "operators.json").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_rotation_racing_other_adds_revokes_the_old_token(tmp_path: Path) -> None:
    store = OperatorStore(tmp_path / "operators.json")
    old = store.add("alice", "admin")
    assert store.authenticate(old) is not None
    procs = {"alice": _spawn(tmp_path, "alice", "admin")}
    procs.update({f"op{i}": _spawn(tmp_path, f"op{i}", "trader") for i in range(8)})
    tokens = _tokens(procs, tmp_path)
    assert store.authenticate(old) is None
    assert sorted(op.id for op in store.operators()) == sorted(procs)
    for oid, token in tokens.items():
        found = store.authenticate(token)
        assert found is not None
        assert found.id == oid


def test_a_serving_store_sees_every_rotation_at_once(tmp_path: Path) -> None:
    # A rotation writes a file of the same size, possibly within one mtime tick (coarse on many file
    # systems; forced here with utime): the server's cached copy must still never accept the old token
    path = tmp_path / "operators.json"
    serving, cli = OperatorStore(path), OperatorStore(path)
    token = cli.add("alice", "admin")
    for _ in range(5):
        assert serving.authenticate(token) is not None
        before = path.stat()
        new = cli.add("alice", "admin")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_size == before.st_size
        assert serving.authenticate(token) is None
        assert serving.authenticate(new) is not None
        token = new


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666], ids=oct)
def test_a_group_or_world_writable_store_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "operators.json"
    token = OperatorStore(path).add("alice", "admin")
    path.chmod(mode)
    with pytest.raises(OperatorError, match=r"writable by group or others .*chmod 600"):
        OperatorStore(path).authenticate(token)
    with pytest.raises(OperatorError, match="writable by group or others"):
        OperatorStore(path).add("bob", "viewer")
    path.chmod(0o640)  # group-readable is not writable: accepted
    assert OperatorStore(path).authenticate(token) is not None


def test_the_server_answers_503_when_the_store_turns_writable(tmp_path: Path) -> None:
    with ApiServer(paper_settings(tmp_path)) as api:
        viewer = api.client("viewer")
        assert viewer.get("/api/status").status_code == 200
        (tmp_path / "operators.json").chmod(0o666)
        r = viewer.get("/api/status")
        assert r.status_code == 503
        assert r.json()["reason"] == "operators_unavailable"
        assert "writable by group or others" in r.json()["detail"]
        assert api.tokens["viewer"] not in r.text


def test_serve_refuses_a_writable_store_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("SAFE_MODE", "EXCHANGE_PROFILE", "PROPBOT_DATA_DIR", "PROPBOT_DB_URL", "PROPBOT_ENV_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("uvicorn.Server.run", lambda *a, **k: pytest.fail("serve started"))
    OperatorStore(tmp_path / "operators.json").add("alice", "admin")
    (tmp_path / "operators.json").chmod(0o622)
    assert main(["serve", "--profile", "paper", "--data-dir", str(tmp_path), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("propbot: error: ")
    assert "writable by group or others" in err
    assert len(err.strip().splitlines()) == 1


def test_operators_list_shows_ids_and_roles_never_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = OperatorStore(tmp_path / "operators.json")
    tokens = [store.add("alice", "admin"), store.add("bob", "viewer")]
    capsys.readouterr()
    assert main(["operators", "list", "--profile", "paper", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == "alice\tadmin\nbob\tviewer\n"
    text = (tmp_path / "operators.json").read_text()
    hashes = [line.split('"')[3] for line in text.splitlines() if "token_sha256" in line]
    assert len(hashes) == 2
    for secret in tokens + hashes:
        assert secret not in out


_HASH = "a" * 64


@pytest.mark.parametrize(
    "text",
    [
        '{"operators": [{"id": "a", "role": "admin", "token_sha256": "%s", "role": "viewer"}]}'.replace(
            "%s", _HASH
        ),
        '{"operators": [], "operators": [{"id": "a", "role": "admin", "token_sha256": "%s"}]}'.replace(
            "%s", _HASH
        ),
        '{"operators": [{"id": "a", "role": "root", "token_sha256": "%s"}]}'.replace("%s", _HASH),
        '{"operators": [{"id": "bad id", "role": "admin", "token_sha256": "%s"}]}'.replace("%s", _HASH),
        '{"operators": [{"id": "a", "role": "admin", "token_sha256": "xyz"}]}',
        '{"operators": [{"id": "a", "role": "admin"}]}',
        '{"operators": [{"id": "a", "role": "admin", "token_sha256": "%s"}, '
        '{"id": "a", "role": "viewer", "token_sha256": "%s"}]}'.replace("%s", _HASH, 1).replace(
            "%s", "b" * 64
        ),
    ],
)
def test_an_ambiguous_or_malformed_store_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "operators.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(OperatorError, match="not a valid operators file"):
        OperatorStore(path).authenticate("pbt_x")
