"""Claiming outputs (src/utils/claim.py): one holder at a time; a holder that has ended is no holder."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest

from src.utils.claim import OutputClaim, OutputInUseError, _start_ticks, holder_alive
from src.utils.errors import OutputExistsError, Refusal


def _record(pid: int, host: str = "") -> dict:
    return {"host": host or socket.gethostname(), "pid": pid, "start": _start_ticks(pid), "since": "earlier"}


def test_one_holder_at_a_time_and_released_at_the_end(tmp_path):
    out = tmp_path / "out"
    with OutputClaim.for_folder(out) as claim:
        holder = json.loads(claim.path.read_text())
        assert claim.path == out / ".claim" and holder["pid"] == os.getpid()
        with pytest.raises(OutputInUseError, match=f"output folder {out} is being written by pid") as err:
            OutputClaim.for_folder(out).acquire()
        assert isinstance(err.value, (Refusal, OutputExistsError, FileExistsError))
    assert not (out / ".claim").exists()
    with OutputClaim.for_file(tmp_path / "m.json") as claim:
        assert claim.path == tmp_path / ".m.json.claim"


def test_a_stale_claim_is_taken_over_a_live_or_remote_one_is_not(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    zombie_record = _record(zombie.pid)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for _ in range(500):  # until it has ended (not yet reaped: a zombie)
            if _start_ticks(zombie.pid) in ("Z", None):
                break
            time.sleep(0.02)
        assert not holder_alive({**_record(dead), "start": "1"}) and not holder_alive(zombie_record)
        assert holder_alive(_record(live.pid)) and holder_alive(_record(1, host="another-host"))
        assert not holder_alive({**_record(live.pid), "start": "1"})  # same pid, another start time: reused
        for record, taken in (
            (_record(live.pid), False),
            (_record(1, host="another-host"), False),
            (zombie_record, True),
        ):
            path = tmp_path / ".claim"
            path.write_text(json.dumps(record))
            if taken:
                with OutputClaim.for_folder(tmp_path):
                    assert json.loads(path.read_text())["pid"] == os.getpid()
                assert not path.exists()
            else:
                with pytest.raises(OutputInUseError, match=f"pid {record['pid']} on {record['host']}"):
                    OutputClaim.for_folder(tmp_path).acquire()
                assert json.loads(path.read_text()) == record  # left alone
    finally:
        live.kill()
        live.wait()
        zombie.wait()


def _try(path, barrier, results):
    barrier.wait()
    try:
        OutputClaim.for_folder(path).acquire()  # kept until the process ends
        results.put("claimed")
    except OutputInUseError:
        results.put("refused")


def test_two_processes_claiming_at_once_one_wins(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_try, args=(tmp_path, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcome = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    assert outcome == ["claimed", "refused"]
