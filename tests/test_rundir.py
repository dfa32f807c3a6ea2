"""A run folder belongs to one run: lock (two real processes), identity, metrics repair, umask-honouring writes."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from diamond.run.errors import OSRefusedError, RunFolderError, RunIdentityError, RunLockedError
from diamond.run.io import read_jsonl
from diamond.run.rundir import IDENTITY_FILE, claim, hold_lock, lock_holder, record_identity, repair_metrics
from tests.test_trainer import TINY

REPO = Path(__file__).resolve().parent.parent
ID = {"game": "Breakout", "seed": 3, "profile": "smoke", "config_hash": "abc"}


def test_second_holder_fails_at_once_naming_pid_and_host(tmp_path: Path) -> None:
    with claim(tmp_path / "run", ID):
        assert lock_holder(tmp_path / "run") == f"pid {os.getpid()} on host {socket.gethostname()}"
        with pytest.raises(RunLockedError, match=rf"is in use by pid {os.getpid()} on host "):
            with hold_lock(tmp_path / "run"):
                pass
    assert lock_holder(tmp_path / "run") is None, "the lock goes with its holder"
    with hold_lock(tmp_path / "run"):  # and can be taken again
        pass


def test_identity_is_recorded_then_other_runs_are_refused_naming_the_fields(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with claim(run_dir, ID):
        pass
    assert json.loads((run_dir / IDENTITY_FILE).read_text()) == ID
    with claim(run_dir, ID):  # the same run resumes
        pass
    with pytest.raises(RunIdentityError, match=r"holds another run \(game Breakout seed 3 profile smoke\): game "
                                               r"'Breakout' on disk vs 'Pong' requested; seed 3 on disk vs 4"):
        record_identity(run_dir, {**ID, "game": "Pong", "seed": 4})
    with pytest.raises(RunIdentityError, match="config hash abc on disk vs xyz requested"):
        record_identity(run_dir, {**ID, "config_hash": "xyz"})


def test_a_file_or_an_unwritable_path_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match=r"--out .*file is a file, not a run folder; choose another --out"):
        with claim(tmp_path / "file", ID):
            pass
    with pytest.raises(OSRefusedError, match=r"--out .*file/run cannot be written \(Not a directory\)") as err:
        with claim(tmp_path / "file" / "run", ID):
            pass
    assert err.value.exit_code == 74, "the OS refused: the README's 74, as any OSError"


def test_repair_keeps_exactly_the_checkpointed_epochs(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"epoch": e, "loss": e / 10}) for e in (1, 2, 3)]
    # epoch 3 logged after the epoch-2 checkpoint, then a torn line from a kill mid-append, then the final line
    path.write_text("\n".join(lines) + '\n{"epoch": 4, "lo' + "\n" + json.dumps({"epoch": 2, "final": True}) + "\n")
    note = repair_metrics(path, upto=2)
    assert note is not None and "dropped 2 written after it and 1 torn line(s)" in note
    assert [r["epoch"] for r in read_jsonl(path)] == [1, 2]
    assert repair_metrics(path, upto=2) is None, "nothing to repair the second time"


def test_repair_drops_binary_garbage_and_non_integer_epochs_as_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"epoch": e}) for e in (1, 2)]
    path.write_bytes(("\n".join(good) + "\n").encode() + b"\x00\xff\xfe\x89PNG\x1a\n" + b'{"epoch": "x"}\n'
                     + json.dumps({"epoch": 3}).encode() + b"\n")
    note = repair_metrics(path, upto=2)
    assert note is not None and "dropped 1 written after it and 2 torn line(s)" in note
    assert [r["epoch"] for r in read_jsonl(path)] == [1, 2]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """The mode a plain open() would give: before, every atomic write kept mkstemp's private 0600."""
    code = (f"import os; os.umask({umask}); from diamond.run.io import atomic_write_json, atomic_write_bytes; "
            f"atomic_write_json(r'{tmp_path}/a.json', {{}}); atomic_write_bytes(r'{tmp_path}/b.pt', b'x'); "
            f"open(r'{tmp_path}/plain', 'w').close()")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"a.json": mode, "b.pt": mode, "plain": mode}


def test_two_processes_on_one_folder_exactly_one_runs(tmp_path: Path) -> None:
    """Two identical `diamond.train` commands at once: one trains, the other fails at once naming the holder."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diamond.train", "--game", "Breakout", "--seed", "1", "--profile", "smoke",
           "--out", str(out), *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 75], results
    loser = next(err for code, _, err in results if code == 75)
    winner_pid = next(p.pid for p, (code, _, _) in zip(procs, results) if code == 0)
    assert loser.strip().splitlines()[-1].startswith(f"python -m diamond.train: error: {out} is in use by pid "
                                                     f"{winner_pid} on host {socket.gethostname()}")
    epochs = [m["epoch"] for m in read_jsonl(out / "metrics.jsonl") if not m.get("final")]
    assert epochs == [1, 2, 3], "each epoch logged once"
