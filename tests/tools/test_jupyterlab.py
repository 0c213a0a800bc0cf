"""The README's JupyterLab route: ``jupyter lab`` serves ``/lab`` and runs a chapter-like cell.

One JupyterLab server is started on 127.0.0.1 (a free port, a token, no browser) with a
scratch ``chapters/topic/`` folder as its root, exactly as a reader runs ``jupyter lab
chapters/``. The tests then ask it for ``/lab`` and, through the server's own REST and
websocket API (what the JupyterLab front end does), open a session for a notebook in the
topic folder and run the book's setup cell in that kernel: it must import ``iclr22`` and
run in the notebook's folder. The server is stopped afterwards; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

JUPYTER = shutil.which("jupyter")
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 90

SETUP_CELL = """\
# Colab: install the book's library and this chapter's data (Colab's torch is kept).
import sys
if "google.colab" in sys.modules:
    raise RuntimeError("this test is not running in Colab")
import os
from iclr22 import runtime
runtime.seed_everything(0)
DEVICE = runtime.device()
print(runtime.banner())
print("CWD=" + os.getcwd())
"""

pytestmark = pytest.mark.skipif(JUPYTER is None, reason="needs the `jupyter` command")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A running ``jupyter lab`` on 127.0.0.1 with a token."""

    def __init__(self, root: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(root.parent / "runtime"),
                   JUPYTER_CONFIG_DIR=str(root.parent / "config"), ICLR22_PROFILE="quick")
        cmd = [JUPYTER, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
               "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI run as root
        self.log_path = root.parent / "lab.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, ""

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text().splitlines()[-5:]
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}: {tail}")
            try:
                if self.get("/api/status", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"jupyter lab did not answer within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server whose root is a scratch ``chapters/`` folder with one notebook."""
    import nbformat

    root = tmp_path_factory.mktemp("lab") / "chapters"
    (root / "topic").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP_CELL)]
    nbformat.write(nb, root / "topic" / "chapter.ipynb")
    server = Lab(root)
    try:
        server.wait_ready()
        yield server, root
    finally:
        server.stop()


def run_in_kernel(lab: Lab, kernel_id: str, code: str) -> tuple[str, list[dict]]:
    """Execute ``code`` over the kernel's websocket; return (stdout, error contents)."""
    from tornado import ioloop, websocket

    async def run() -> tuple[str, list[dict]]:
        url = (f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels"
               f"?token={lab.token}")
        conn = await websocket.websocket_connect(url)
        msg_id = uuid.uuid4().hex
        conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False}}))
        stdout, errors = [], []
        while True:
            raw = await conn.read_message()
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                stdout.append(msg["content"]["text"])
            elif kind == "error":
                errors.append(msg["content"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                conn.close()
                return "".join(stdout), errors

    loop = ioloop.IOLoop()
    try:
        return loop.run_sync(run, timeout=RUN_TIMEOUT_S)
    finally:
        loop.close()


def test_jupyter_lab_serves_lab_on_localhost(lab):
    server, _ = lab
    status, body = server.get("/lab")
    assert status == 200
    assert "JupyterLab" in body or "jupyter-config-data" in body


def test_chapter_runs_in_a_kernel_started_from_its_folder(lab):
    server, root = lab
    session = server.post("/api/sessions", {
        "path": "topic/chapter.ipynb", "type": "notebook", "name": "chapter.ipynb",
        "kernel": {"name": "python3"}})
    stdout, errors = run_in_kernel(server, session["kernel"]["id"], SETUP_CELL)
    assert errors == []
    assert "profile" in stdout.lower()
    cwd = stdout.split("CWD=")[1].strip()
    assert Path(cwd).resolve() == (root / "topic").resolve()
