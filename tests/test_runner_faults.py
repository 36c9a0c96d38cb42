"""Environment faults and bad runner options: exit 2 with one line and no traceback; a bad model
is one error before any item; --jobs is capped; outputs honour the umask; a killed run's temporary
files are cleaned and its pool workers do not linger."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from runner_stages import PairStage

from face3d_data.io import atomic
from pipelines.core import RunOptions, read_manifest, run_stage
from pipelines.run import main

HERE = os.path.dirname(os.path.abspath(__file__))


def _one_line_exit_2(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("flag, value", [("--seed", "-1"), ("--jobs", "-7"), ("--limit", "-5")])
def test_negative_runner_options_exit_2(capsys, tmp_path, flag, value):
    line = _one_line_exit_2(capsys, ["synth_300wlp", "--count", "2", "--out", str(tmp_path / "o"), flag, value])
    assert flag in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option", ["--center_jitter=nan", "--center_jitter=inf", "--yaw_range_deg=-inf"])
def test_nan_and_inf_options_exit_2_naming_the_option(capsys, tmp_path, option):
    name, value = option.split("=")
    line = _one_line_exit_2(capsys, ["synth_300wlp", "--out", str(tmp_path / "o"), "--set",
                                     f"{name[2:]}={value}"])
    assert name[2:] in line


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", ["dask", "ray"])
@pytest.mark.parametrize("kind", ["unreachable", "malformed"])
def test_bad_scheduler_fails_fast_with_exit_2(capsys, tmp_path, backend, kind):
    address = f"127.0.0.1:{_free_port()}" if kind == "unreachable" else "not an address"
    started = time.monotonic()
    line = _one_line_exit_2(capsys, ["synth_300wlp", "--count", "2", "--out", str(tmp_path / "o"),
                                     "--backend", backend, "--scheduler", address])
    assert "--scheduler" in line
    assert time.monotonic() - started < 60  # the documented limit is 10 s; this only rules out a hang
    assert not (tmp_path / "o").exists()


def test_silent_dask_scheduler_times_out_with_exit_2(capsys, tmp_path, monkeypatch):
    # Dask comes with the test extra: no importorskip, a missing install fails here
    from pipelines.core import executor

    monkeypatch.setattr(executor, "SCHEDULER_TIMEOUT_S", 2.0)
    with socket.socket() as server:  # accepts connections but never speaks the protocol
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        pair = tmp_path / "data"
        assert main(["synth_300wlp", "--count", "2", "--image_size", "48", "--out", str(pair),
                     "--jobs", "1", "--quiet"]) == 0
        capsys.readouterr()
        started = time.monotonic()
        line = _one_line_exit_2(capsys, ["posmap", "--data-root", str(pair), "--out", str(tmp_path / "o"),
                                         "--backend", "dask", "--scheduler", address])
    assert "--scheduler" in line and "within 2 s" in line
    assert time.monotonic() - started < 40


def test_silent_ray_cluster_times_out_with_exit_2(capsys, tmp_path, monkeypatch):
    """A Ray head that accepts the connection but never answers made ray.init hang past 120 s.
    Ray itself is optional, so a stand-in module whose init never returns plays the client."""
    import threading
    import types

    from pipelines.core import executor

    release = threading.Event()
    calls = []

    def never_answers(**kwargs):
        calls.append(kwargs)
        release.wait(60)

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False
    fake.init = never_answers
    fake.shutdown = lambda: None
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(executor, "SCHEDULER_TIMEOUT_S", 2.0)
    data = tmp_path / "data"
    assert main(["synth_300wlp", "--count", "2", "--image_size", "48", "--out", str(data), "--jobs", "1",
                 "--quiet"]) == 0
    capsys.readouterr()
    try:
        with socket.socket() as server:  # accepts connections but never speaks the protocol
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            address = f"ray://127.0.0.1:{server.getsockname()[1]}"
            started = time.monotonic()
            line = _one_line_exit_2(capsys, ["posmap", "--data-root", str(data), "--out", str(tmp_path / "o"),
                                             "--backend", "ray", "--scheduler", address, "--quiet"])
    finally:
        release.set()
    assert calls and calls[0]["address"] == address
    assert "--scheduler" in line and "within 2 s" in line, line
    assert time.monotonic() - started < 40
    assert not (tmp_path / "o" / "manifest.parquet").exists()


def test_scheduler_needs_a_distributed_backend(capsys, tmp_path):
    _one_line_exit_2(capsys, ["synth_300wlp", "--out", str(tmp_path / "o"), "--scheduler", "h:1"])


@pytest.mark.parametrize("stage, extra", [
    ("synth_300wlp", ["--count", "3"]),
    ("posmap", ["--data-root", "{data}"]),
    ("pncc", ["--data-root", "{data}"]),
])
def test_bad_model_is_one_error_before_any_item(capsys, tmp_path, stage, extra):
    data = tmp_path / "data"
    assert main(["synth_300wlp", "--count", "3", "--image_size", "48", "--out", str(data), "--jobs", "1",
                 "--quiet"]) == 0
    capsys.readouterr()
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"this is not a model")
    out = tmp_path / "out"
    for model in (str(broken), str(tmp_path / "missing.npz")):
        args = [a.format(data=data) for a in extra]
        line = _one_line_exit_2(capsys, [stage, "--out", str(out), "--model", model, "--jobs", "2", *args])
        assert "model" in line.lower() or os.path.basename(model) in line
        assert not (out / "failures.csv").exists() and not (out / "manifest.parquet").exists()


def test_jobs_are_capped_by_the_batches_and_the_cores(pair_folder, tmp_path):
    from pipelines.core import available_cores

    summary = run_stage(PairStage, RunOptions(out=str(tmp_path / "o"), jobs=1000, quiet=True, limit=3),
                        cfg={"data_root": str(pair_folder)})
    assert summary.processed == 3
    _, meta = read_manifest(str(tmp_path / "o" / "manifest.parquet"))
    assert meta["options"]["jobs"] == min(3, available_cores())


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_honour_the_umask(tmp_path, umask, mode, monkeypatch):
    monkeypatch.setattr(atomic, "_UMASK", None)
    old = os.umask(umask)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
        monkeypatch.setattr(atomic, "_UMASK", None)
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == mode


def test_stale_temporaries_of_dead_writers_are_removed_on_start(pair_folder, tmp_path):
    out = tmp_path / "o"
    (out / "AFW").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = atomic._host()
    stale = out / "AFW" / f".img_01_out.png.tmp-{host}-{dead.pid}-abc123"
    stale.write_bytes(b"x" * 1000)
    live = out / f".other.npy.tmp-{host}-{os.getpid()}-zzz"  # a writer still running (another shard)
    live.write_bytes(b"y")
    mine = out / "notes.tmp-1"  # not the writer's pattern
    mine.write_bytes(b"z")
    run_stage(PairStage, RunOptions(out=str(out), jobs=1, quiet=True), cfg={"data_root": str(pair_folder)})
    assert not stale.exists() and live.exists() and mine.exists()


def _enospc_replace(real):
    def replace(src, dst):
        if str(dst).endswith("_out.png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)
    return replace


def test_full_disk_stops_the_run_with_one_line(pair_folder, tmp_path, monkeypatch, capsys):
    import runner_stages

    monkeypatch.setattr(os, "replace", _enospc_replace(os.replace))
    monkeypatch.setitem(__import__("pipelines.registry").registry.STAGES, "pairs", "runner_stages")
    monkeypatch.setattr(runner_stages.PairStage, "Options", None, raising=False)
    import pipelines.core.config as config_module

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "pairs.yaml").write_text("data_root: null   # input\nsleep: 0.0   # seconds\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", str(folder))
    line = _one_line_exit_2(capsys, ["pairs", "--out", str(tmp_path / "o"), "--data_root", str(pair_folder),
                                     "--jobs", "2", "--backend", "threading"])
    assert "No space left on device" in line and "_out.png" in line
    assert not (tmp_path / "o" / "failures.csv").exists()


def _mount_tmpfs(path, options):
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_really_full_tmpfs_exits_2(pair_folder, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _mount_tmpfs(mnt, "size=64k"):
        pytest.skip("needs root to mount a tiny tmpfs (the monkeypatched test covers the logic)")
    try:
        result = _cli_pairs(pair_folder, mnt / "o")
    finally:
        subprocess.run(["umount", str(mnt)])
    assert result.returncode == 2, result.stderr
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _cli_pairs(data, out):
    script = ("import sys; sys.path.insert(0, %r)\n"
              "import pipelines.registry as r, pipelines.core.config as c\n"
              "r.STAGES['pairs'] = 'runner_stages'\n"
              "import os, tempfile; d = tempfile.mkdtemp()\n"
              "open(os.path.join(d, 'pairs.yaml'), 'w').write('data_root: null # in\\nsleep: 0.0 # s\\n')\n"
              "c.CONFIG_DIR = d\n"
              "from pipelines.run import main\n"
              "sys.exit(main(['pairs', '--out', %r, '--data_root', %r, '--jobs', '2', '--quiet']))\n"
              % (HERE, str(out), str(data)))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_read_only_output_folder_exits_2(pair_folder, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if not _mount_tmpfs(ro, "ro,size=64k"):
            pytest.skip("running as root without permission to mount a read-only tmpfs")
    else:
        os.chmod(ro, 0o555)
    try:
        for out in (ro, ro / "sub"):
            result = _cli_pairs(pair_folder, out)
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
            assert "writable" in result.stderr or "Read-only" in result.stderr or "ermission" in result.stderr
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)])
        else:
            os.chmod(ro, 0o755)


def test_piping_into_head_exits_quietly(tmp_path):
    for args in (["--help"], ["synth_300wlp", "--help"]):
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.run", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.close()  # the reader is gone before anything is written
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, err
        assert "Traceback" not in err and "BrokenPipe" not in err, err


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to find the workers")
def test_loky_workers_exit_when_the_main_process_is_killed(pair_folder, tmp_path):
    out = tmp_path / "killed"
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from runner_stages import PairStage\n"
              "from pipelines.core import RunOptions, run_stage\n"
              "run_stage(PairStage, RunOptions(out=%r, jobs=2, quiet=True), cfg={'data_root': %r, 'sleep': 0.5})\n"
              % (HERE, str(out), str(pair_folder)))
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = out / ".face3d" / "pairs.journal.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and not (journal.exists() and journal.read_text().count("\n") >= 1):
        time.sleep(0.05)
    descendants = set(_children(proc.pid))
    for child in list(descendants):
        descendants |= set(_children(child))
    assert descendants, "the run should have started pool workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") and _is_running(p) for p in descendants):
        time.sleep(0.2)
    alive = [p for p in descendants if os.path.exists(f"/proc/{p}") and _is_running(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, "pool workers outlived the killed main process"


def _is_running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
