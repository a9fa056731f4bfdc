"""The pages a user opens, in a real browser: a smoke study run with --dashboard, then
the Ray dashboard (Jobs, Actors) while it runs, TensorBoard on its event files and
optuna-dashboard on a smoke search's optuna.db, each loaded in headless Chromium, which
must find the study and a trial's name or metric on the page.

Skipped where Chromium (Debian's ``chromium``) or playwright is missing, as on CI.
With ADDRAY_SCREENSHOTS=DIR it saves a screenshot of each page there (docs/img/)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, kill_tree

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")]
playwright = pytest.importorskip("playwright.sync_api")
SHOTS = os.environ.get("ADDRAY_SCREENSHOTS")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(text_of, pattern: str, timeout: float, proc: subprocess.Popen) -> re.Match:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.search(pattern, text_of())
        if found:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} within {timeout:g} s:\n{text_of()[-3000:]}")


def _page_shows(page, url: str, texts: list[str], shot: str, timeout: float = 60) -> None:
    page.goto(url)
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        time.sleep(2)
        body = page.inner_text("body")
        if all(t in body for t in texts):
            break
        page.reload()  # the dashboard's tables do not refresh themselves
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / shot), full_page=False)
    missing = [t for t in texts if t not in body]
    assert not missing, f"{url}: {missing} not on the page:\n{body[:2000]}"


def _server(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.5)
    kill_tree(proc.pid)
    raise AssertionError(f"{cmd[0]} did not listen on {port}:\n{log.read_text()[-2000:]}")


def test_each_tool_shows_the_study_in_a_browser(tmp_path, kill_leftovers):
    results = tmp_path / "results"
    log = tmp_path / "study.log"
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    study = subprocess.Popen(
        [sys.executable, "sweeps/phase1.py", "--smoke-test", "--dashboard", "--study",
         "browsed", "--configs", "configs/sizes/phase1_2k.yaml", "--lr", "1e-3,3e-3",
         "--no-prune", "--max-steps", "3000", "--check-every", "100", "--set",
         "training.early_stopping=null", "--results", str(results)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    servers = []
    try:
        dashboard = _wait_for(log.read_text, r"Ray dashboard at (http://\S+)", 120,
                              study).group(1)
        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies([{"name": "ray-authentication-token", "value": token,
                                  "url": dashboard}])
            page = context.new_page()
            # Ray dashboard, while the study runs: its job (the command names the study)
            # and one actor per trial, named after it
            _page_shows(page, f"{dashboard}/#/jobs", ["--study browsed"], "ray-jobs.png")
            _page_shows(page, f"{dashboard}/#/actors", ["browsed:phase1_2k-s0-lr0.00"],
                        "ray-actors.png")
            study.wait(timeout=600)
            assert study.returncode == 0, log.read_text()[-3000:]
            # TensorBoard on the finished study: a trial's run and its exact match by step
            port = _free_port()
            servers.append(_server([str(BIN / "tensorboard"), "--logdir",
                                    str(results / "browsed" / "tune"), "--host",
                                    "127.0.0.1", "--port", str(port)], port,
                                   tmp_path / "tb.log"))
            _page_shows(page, f"http://127.0.0.1:{port}/?runFilter=lr0.001&tagFilter="
                        f"%5E(exact_match%7Cstrata)#timeseries",
                        # exact match and the eight strata match the filter; cards below
                        # the fold are not drawn until scrolled to
                        ["exact_match", "9 cards", "phase1_2k-s0-lr0.001"],
                        "tensorboard.png", 90)
            # optuna-dashboard on a smoke search: the study, its named objective
            search = subprocess.run(
                [sys.executable, "sweeps/phase3_search.py", "--smoke-test", "--results",
                 str(results), "--confirm-seeds", "0"], cwd=ROOT, env=env,
                capture_output=True, text=True, timeout=600)
            assert search.returncode == 0, search.stderr[-3000:]
            port = _free_port()
            servers.append(_server([str(BIN / "optuna-dashboard"),
                                    f"sqlite:///{results / 'phase3' / 'optuna.db'}",
                                    "--host", "127.0.0.1", "--port", str(port)], port,
                                   tmp_path / "optuna.log"))
            _page_shows(page, f"http://127.0.0.1:{port}/dashboard/studies/1",
                        ["phase3", "exact_match"], "optuna-dashboard.png", 90)
            browser.close()
    finally:
        kill_tree(study.pid)
        for s in servers:
            kill_tree(s.pid)
