"""docs/your_images.md runs as written, on a small folder (two classes of 32x32 colour PNGs): every
command of its `sh` blocks, in order,
with the 15-minute budgets cut to a few steps; the server's curl example is sent to a real
`vaegan serve` started with the page's own arguments."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

PAGE = Path(__file__).resolve().parents[2] / "docs" / "your_images.md"


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", PAGE.read_text(), re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_page_goes_from_a_folder_to_a_served_model(tmp_path):
    httpx = pytest.importorskip("httpx")
    from tests.runtime.live import start_serve

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "my_images" / label).mkdir(parents=True)
        for i in range(40):
            img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / "my_images" / label / f"{i:04d}.png")
    commands = _commands()
    assert [c[1] for c in commands if c[0] == "vaegan"] == [
        "train", "train", "eval", "export", "sample", "doctor", "serve"
    ]  # fmt: skip
    served = False
    for cmd in commands:
        cmd = [str(tmp_path / a) if a.startswith(("runs/", "artifacts/", "my_images")) else a for a in cmd]
        cmd = [{"15m": "8s", "5m": "3s"}.get(a, a) for a in cmd]
        if cmd[0] == "vaegan" and cmd[1] == "serve":
            port_at = cmd.index("--port")
            proc, url = start_serve(cmd[2], *cmd[port_at + 2 :])
            served = True
            continue
        if cmd[0] == "curl":
            assert served
            body = cmd[cmd.index("-d") + 1]
            r = httpx.post(f"{url}/v1/sample", content=body, timeout=60)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
            continue
        r = run_cli(*cmd[1:], cwd=tmp_path)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
    proc.kill()
    proc.wait()
    assert (tmp_path / "runs" / "mine" / "eval.json").exists() and (tmp_path / "cats.png").exists()
    assert (tmp_path / "artifacts" / "mine" / "prior.npz").exists()
