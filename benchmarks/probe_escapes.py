"""The probe of issue #40: try each class of mistake and attack on addray's commands as a
user would, and print one verdict line per case (PASS when the command refuses or copes
as the rule says, FAIL with what happened).

    python benchmarks/probe_escapes.py [--only SUBSTRING] [--keep]

Every case runs a real command (``python -m addray.X`` or a study script) in a fresh
temporary folder, with its memory capped at 2 GiB (``RLIMIT_AS``) so that an unbounded
read fails instead of exhausting the machine. The rule for a user's mistake: exit 2, one
line on stderr starting ``error:``, no traceback, nothing written outside the folder
named or through a link. For a disk that refuses writes (EROFS, EACCES, ENOSPC, raised by
a wrapper around ``os.open``/``open``/``os.mkdir`` for paths under the output folder:
no real disk is filled or remounted): exit 1, one line naming the path. For SIGTERM: the
exit status 143. Cases that start Ray are marked and take longer. Exit status: the
number of failed cases (0: all passed).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMORY = 2 << 30  # bytes a probed command may map
SMALL = ("model: {d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32}\n"
         "training: {batch_size: 16, max_steps: 4, check_every: 2, warmup_steps: 1}\n"
         "data: {n_train: 200, n_test: 20, min_per_stratum: 0}\n")
# os.open, open and os.mkdir fail with errno ERR for paths under UNDER; then run MODULE
FAULTY = """
import builtins, errno, io, os, runpy, sys
UNDER, ERR, MODULE = os.path.realpath(sys.argv[1]), getattr(errno, sys.argv[2]), sys.argv[3]
sys.argv = [MODULE] + sys.argv[4:]
def refused(path):
    try:
        return os.path.realpath(os.fspath(path)).startswith(UNDER)
    except TypeError:
        return False
def fail(path):
    raise OSError(ERR, os.strerror(ERR), os.fspath(path))
real_os_open, real_open, real_mkdir = os.open, builtins.open, os.mkdir
def os_open(path, flags, *a, **k):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path):
        fail(path)
    return real_os_open(path, flags, *a, **k)
def open_(file, mode="r", *a, **k):
    if not isinstance(file, int) and any(c in mode for c in "wax+") and refused(file):
        fail(file)
    return real_open(file, mode, *a, **k)
def mkdir(path, *a, **k):
    if refused(path):
        fail(path)
    return real_mkdir(path, *a, **k)
os.open, builtins.open, io.open, os.mkdir = os_open, open_, open_, mkdir
if MODULE.endswith(".py"):
    runpy.run_path(MODULE, run_name="__main__")
else:
    runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
"""


@dataclass
class Case:
    name: str
    klass: str  # the class (its "What to build" item)
    setup: Callable[[Path], list[str]]  # makes the case's files; returns the command
    code: int = 2  # the exit status the rule asks for
    says: str = ""  # what the one line must contain
    untouched: list[str] = field(default_factory=list)  # files that must keep their bytes
    absent: list[str] = field(default_factory=list)  # paths that must not exist afterwards
    ray: bool = False  # the command starts Ray (slower; no memory cap: Ray maps more)
    signal_after: float | None = None  # ``sig`` this long after its run folder appears
    sig: int = signal.SIGTERM
    ready: str = "out"  # the path whose appearance says the command is at work


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)


def _link_lock(d: Path) -> list[str]:
    write(d, {"c.yaml": SMALL, "victim.txt": "precious"})
    (d / "out").mkdir()
    (d / "out" / ".lock").symlink_to(d / "victim.txt")
    return py("-m", "addray.train", "c.yaml", "--out", "out")


def _linked_out(d: Path) -> list[str]:
    write(d, {"c.yaml": SMALL})
    (d / "elsewhere").mkdir()
    (d / "out").symlink_to(d / "elsewhere")
    return py("-m", "addray.train", "c.yaml", "--out", "out")


def _linked_study(d: Path) -> list[str]:
    (d / "elsewhere").mkdir()
    (d / "r").mkdir()
    (d / "r" / "evil").symlink_to(d / "elsewhere")
    return py(str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--results", "r",
              "--study", "evil")


def _dangling_study(d: Path) -> list[str]:
    (d / "r").mkdir()
    (d / "r" / "gone").symlink_to(d / "nothing")
    return py(str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--results", "r",
              "--study", "gone")


def _bomb(d: Path) -> list[str]:
    with zipfile.ZipFile(d / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (200 << 20))
    return py("-m", "addray.verify", "bomb.pt")


def _checkpoint(d: Path, edit: str) -> list[str]:
    """A real checkpoint (4 steps of a small model) with one entry made wrong."""
    write(d, {"c.yaml": SMALL})
    subprocess.run(py("-m", "addray.train", "c.yaml", "--out", "run"), cwd=d, check=True,
                   capture_output=True, timeout=300)
    import torch

    path = d / "run" / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    if edit == "config-string":
        payload["config"] = "not a config"
    elif edit == "model-list":
        payload["model"] = [1, 2, 3]
    torch.save(payload, path)
    return py("-m", "addray.verify", str(path))


def _checkpoint_folder(d: Path) -> list[str]:
    write(d, {"c.yaml": SMALL})
    (d / "out" / "checkpoint.pt").mkdir(parents=True)
    return py("-m", "addray.train", "c.yaml", "--out", "out", "--resume")


def _study_json(d: Path, info: dict, trials: str = "") -> list[str]:
    study = d / "r" / "s"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"study": "s", "state": "finished", **info}))
    head = "trial_id,config,status,params,seed,lr,steps,final_exact_match,best_exact_match\n"
    (study / "trials.csv").write_text(head + (trials or "t0,a,completed,100,0,0.01,10,0.5,0.5\n"))
    return py("-m", "addray.report", "r")


def _study_resume(d: Path, remove_tuner: bool) -> list[str]:
    """A real smoke study of one trial (Ray), then its Tune state missing or cut short."""
    args = [str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--results", "r",
            "--configs", str(ROOT / "configs" / "sizes" / "phase1_2k.yaml"), "--seeds", "1",
            "--lr", "1e-2"]
    subprocess.run(py(*args), cwd=d, check=True, capture_output=True, timeout=300)
    pkl = d / "r" / "phase1" / "tune" / "tuner.pkl"
    if remove_tuner:
        pkl.unlink()
    else:
        pkl.write_bytes(pkl.read_bytes()[:100])
    return py(*args, "--resume")


def _copied_study(d: Path) -> list[str]:
    """A real smoke study copied to another results folder, resumed there."""
    args = ["--smoke-test", "--configs", str(ROOT / "configs" / "sizes" / "phase1_2k.yaml"),
            "--seeds", "1", "--lr", "1e-2"]
    script = str(ROOT / "sweeps" / "phase1.py")
    subprocess.run(py(script, *args, "--results", "r"), cwd=d, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["cp", "-a", "r", "copy"], cwd=d, check=True)
    return py(script, *args, "--results", "copy", "--resume")


def _faulty(err: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        write(d, {"c.yaml": SMALL})
        (d / "out").mkdir()
        return py("-c", FAULTY, str(d / "out"), err, "addray.train", "c.yaml", "--out",
                  str(d / "out" / "run"))
    return setup


def _faulty_data(d: Path) -> list[str]:
    (d / "out").mkdir()
    return py("-c", FAULTY, str(d / "out"), "EROFS", "addray.data", "--out",
              str(d / "out" / "data"), "--train", "10", "--test", "10")


def _faulty_report(d: Path) -> list[str]:
    _study_json(d, {})
    return py("-c", FAULTY, str(d / "r"), "EACCES", "addray.report", "r")


def _faulty_study(d: Path) -> list[str]:
    (d / "r").mkdir()
    return py("-c", FAULTY, str(d / "r"), "EROFS", str(ROOT / "sweeps" / "phase1.py"),
              "--smoke-test", "--results", str(d / "r"), "--configs",
              str(ROOT / "configs" / "sizes" / "phase1_2k.yaml"), "--seeds", "1", "--lr",
              "1e-2")


def _study_sigterm(d: Path) -> list[str]:
    return py(str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--results", "r",
              "--configs", str(ROOT / "configs" / "sizes" / "phase1_2k.yaml"), "--seeds", "1",
              "--lr", "1e-2", "--max-steps", "100000", "--check-every", "10", "--no-prune",
              "--set", "training.early_stopping=null")


def _sigterm(d: Path) -> list[str]:
    write(d, {"c.yaml": SMALL.replace("max_steps: 4", "max_steps: 100000")})
    return py("-m", "addray.train", "c.yaml", "--out", "out")


def cases() -> list[Case]:
    train = ["-m", "addray.train"]
    return [
        # 1. links and planted files
        Case("lock is a link", "links", _link_lock, says="symbolic link",
             untouched=["victim.txt"]),
        Case("run folder is a link", "links", _linked_out, says="link",
             absent=["elsewhere/checkpoint.pt"]),
        Case("study folder is a link", "links", _linked_study, says="symbolic link",
             absent=["elsewhere/study.json"]),
        Case("study folder is a dangling link", "links", _dangling_study,
             says="symbolic link", absent=["nothing"]),
        # 2. resume that cannot restart
        Case("resume without tuner.pkl", "resume", lambda d: _study_resume(d, True),
             says="tuner.pkl: missing", ray=True, untouched=["r/phase1/trials.csv"]),
        Case("resume with a cut tuner.pkl", "resume", lambda d: _study_resume(d, False),
             says="tuner.pkl: cut short", ray=True, untouched=["r/phase1/trials.csv"]),
        Case("resume of a copied study", "resume", _copied_study, says="copied or moved",
             ray=True, untouched=["r/phase1/trials.csv", "r/phase1/curves.csv"]),
        # 3. bounded reads, results folders
        Case("config is /dev/zero", "reads", lambda d: py(*train, "/dev/zero")),
        Case("pairs file is /dev/zero", "reads", lambda d: py(
            "-m", "addray.predict", "ckpt.pt", "--file", "/dev/zero")),
        Case("data.train_file is /dev/zero", "reads", lambda d: (
            write(d, {"c.yaml": SMALL}),
            py(*train, "c.yaml", "--set", "data.train_file=/dev/zero"))[1]),
        Case("zip bomb checkpoint", "reads", _bomb, says="not an addray checkpoint"),
        Case("study.json names a path", "results", lambda d: _study_json(
            d, {"study": "../../escaped"}), code=0, absent=["../escaped*", "../../escaped*"]),
        Case("trials.csv value not a number", "results", lambda d: _study_json(
            d, {}, "t0,a,completed,100,0,0.01,10,abc,0.5\n"), says="final_exact_match"),
        Case("trials.csv negative count", "results", lambda d: _study_json(
            d, {}, "t0,a,completed,-5,0,0.01,10,0.5,0.5\n"), says="params"),
        # 4. signals and disks
        Case("SIGTERM to a study's driver", "signals", _study_sigterm, code=143,
             says="", signal_after=2.0, ready="r/phase1/curves.csv", ray=True),
        Case("SIGTERM during training", "signals", _sigterm, code=143,
             says="interrupted", signal_after=1.0),
        Case("SIGHUP during training (a closed terminal)", "signals", _sigterm, code=129,
             says="interrupted", signal_after=1.0, sig=signal.SIGHUP),
        Case("read-only output (EROFS)", "disks", _faulty("EROFS"), code=1,
             says="Read-only file system"),
        Case("no permission (EACCES)", "disks", _faulty("EACCES"), code=1,
             says="Permission denied"),
        Case("disk full (ENOSPC)", "disks", _faulty("ENOSPC"), code=1,
             says="No space left on device"),
        Case("read-only output of addray.data", "disks", _faulty_data, code=1,
             says="Read-only file system"),
        Case("report into a folder it may not write", "disks", _faulty_report, code=1,
             says="Permission denied"),
        Case("read-only results folder of a study", "disks", _faulty_study, code=1,
             says="Read-only file system", ray=True),
        # 5. YAML and names
        Case("sexagesimal max_steps", "yaml", lambda d: (
            write(d, {"c.yaml": SMALL.replace("max_steps: 4", "max_steps: 1:30")}),
            py(*train, "c.yaml"))[1], says="1:30"),
        Case("octal-looking seed", "yaml", lambda d: (
            write(d, {"c.yaml": SMALL.replace("warmup_steps: 1}", "warmup_steps: 1, seed: 010}")}),
            py(*train, "c.yaml"))[1], says="010"),
        Case("empty config", "yaml", lambda d: (write(d, {"c.yaml": ""}),
                                                py(*train, "c.yaml"))[1], says="empty"),
        Case("study name with a newline", "names", lambda d: py(
            str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--study", "abc\n",
            "--results", "r"), says="plain name"),
        Case("study named reference", "names", lambda d: py(
            str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--study", "reference",
            "--results", "r"), says="reserved"),
        Case("addray.data over existing files", "names", lambda d: (
            write(d, {"data/train.jsonl": "x\n", "data/test.jsonl": "y\n"}),
            py("-m", "addray.data", "--out", "data", "--train", "10", "--test", "10"))[1],
             says="--overwrite", untouched=["data/train.jsonl"]),
        # 6. fail before Ray starts (or before any trial)
        Case("relative data.train_file in a study", "early", lambda d: py(
            str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--results", "r",
            "--set", "data.train_file=pairs.jsonl"), says="train_file"),
        Case("phase 3 study name too long", "early", lambda d: py(
            str(ROOT / "sweeps" / "phase3_search.py"), "--smoke-test", "--results", "r",
            "--study", "s" * 98), says="--study"),
        Case("checkpoint.pt is a folder", "early", _checkpoint_folder, says="checkpoint"),
        Case("checkpoint config is a string", "early",
             lambda d: _checkpoint(d, "config-string"), says="saved config"),
        Case("checkpoint weights are a list", "early",
             lambda d: _checkpoint(d, "model-list"), says="weights"),
        Case("5,000-digit operand", "early", lambda d: (
            write(d, {"pairs.txt": "9" * 5000 + " 1\n"}),
            py("-m", "addray.predict", str(ROOT / "results" / "reference" / "smallest" /
                                          "best.pt"), "--file", "pairs.txt"))[1]),
        Case("cuda-only config without GPUs", "early", lambda d: py(
            str(ROOT / "sweeps" / "phase1.py"), "--smoke-test", "--results", "r",
            "--configs", str(ROOT / "configs" / "sizes" / "phase1_2k.yaml"), "--seeds", "1",
            "--lr", "1e-2", "--set", "training.device=cuda"), says="training.device = cuda",
             ray=True, absent=["r/phase1/trials.csv"]),
    ]


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run_case(case: Case, folder: Path) -> tuple[bool, str]:
    try:
        cmd = case.setup(folder)
    except Exception as exc:  # noqa: BLE001 - a probe reports, never stops
        return False, f"setup failed: {type(exc).__name__}: {exc}"
    before = {f: (folder / f).read_bytes() for f in case.untouched}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cap = None if case.ray else _limit
    if case.signal_after is None:
        try:
            proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300,
                                  preexec_fn=cap, env=env)
        except subprocess.TimeoutExpired:
            return False, "did not end within 300 s"
        code, err = proc.returncode, proc.stderr
    else:
        p = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=cap, env=env)
        deadline = time.time() + 120
        while not (folder / case.ready).exists() and time.time() < deadline \
                and p.poll() is None:
            time.sleep(0.1)  # training has started: its run folder is there
        time.sleep(case.signal_after)
        p.send_signal(case.sig)
        _, err = p.communicate(timeout=120)
        code = p.returncode
    lines = [ln for ln in err.splitlines() if ln.strip()]
    problems = []
    if code != case.code:
        problems.append(f"exit {code}, not {case.code}")
    if "Traceback" in err:
        problems.append("a traceback")
    if case.code != 0:
        if not lines:
            problems.append("nothing on stderr")
        elif case.says and case.says not in lines[-1]:
            problems.append(f"last line lacks {case.says!r}")
    for f, data in before.items():
        if (folder / f).read_bytes() != data:
            problems.append(f"{f} changed")
    for f in case.absent:
        if glob.glob(str(folder / f)):
            problems.append(f"{f} was written")
    said = lines[-1][:150] if lines else ""
    return not problems, "; ".join(problems) + (f" (said: {said})" if problems else said)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="run the cases whose name contains this")
    p.add_argument("--keep", action="store_true", help="keep each case's folder")
    p.add_argument("--no-ray", action="store_true", help="leave out the cases that start Ray")
    args = p.parse_args(argv)
    print(f"# probe of issue #40, {datetime.datetime.now().isoformat(timespec='minutes')}, "
          f"commit {_commit()}")
    failed = 0
    for case in cases():
        if args.only not in case.name or (args.no_ray and case.ray):
            continue
        folder = Path(tempfile.mkdtemp(prefix="addray-probe-"))
        ok, detail = run_case(case, folder)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} [{case.klass}] {case.name}: {detail}", flush=True)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
    print(f"# {failed} failed")
    return min(failed, 100)


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
