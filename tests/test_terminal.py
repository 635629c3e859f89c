"""The configuration's questions and review screen as an operator sees them on a real terminal.

The live view runs in tmux (a real terminal with a real screen); what is on the screen
is read with ``capture-pane``. The plain mode runs under a pseudo-terminal.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from test_configuration import COMPOSE, CONFIG, terminal

from conftest import Project, Projects

pytestmark = pytest.mark.docker


class Tmux:
    """One tmux server of our own (its own socket), one window of 120x50."""

    def __init__(self, argv: list[str]):
        if shutil.which("tmux") is None:
            pytest.fail("tmux is missing: run scripts/setup.sh (installs it)")
        self.socket = f"sft-{uuid.uuid4().hex[:8]}"
        # The exit code is printed when the command ends, and the pane stays to be read.
        keep = "import subprocess, sys, time; print('EXIT', subprocess.call(sys.argv[1:]), flush=True); time.sleep(600)"
        self.tmux("new-session", "-d", "-x", "120", "-y", "50", "-s", "deploy", sys.executable, "-c", keep, *argv)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "deploy")

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"never saw {text!r} on the screen:\n{self.screen()}")

    def settled(self, seconds: float = 2.0) -> str:
        """The screen after the live view has had time to redraw (8 times a second) many times."""
        time.sleep(seconds)
        return self.screen()

    def type(self, text: str) -> None:
        if text:
            self.tmux("send-keys", "-t", "deploy", "-l", text)
        self.tmux("send-keys", "-t", "deploy", "Enter")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def live_site(projects: Projects) -> Iterator[Project]:
    site = projects.new({"compose.yaml": COMPOSE, "surefoot.toml": CONFIG}, env={"SUREFOOT_PROGRESS": "live"})
    yield site


def test_the_live_view_steps_aside_for_the_questions_and_the_review(live_site: Project) -> None:
    argv = ["env", *(f"{k}={v}" for k, v in live_site.env.items()), *live_site.command("deploy")]
    term = Tmux(argv)
    try:
        term.wait_for("Domain name:")
        term.type("not a domain")
        term.wait_for("at least one dot")
        term.type("shop.example.com")
        term.wait_for("Payment provider API key:")
        term.type("pk_live_0123456789abcdef")
        term.wait_for("Write these values to")
        screen = term.settled()
        # Every line of the review and the validation message are still on the screen.
        for text in ("values for", "DOMAIN", "shop.example.com", "API_KEY", "[hidden, 24 characters]",
                     "DB_PASSWORD", "[generated, 40 characters]", "APP_URL", "https://shop.example.com/app",
                     "at least one dot", "Write these values to"):
            assert text in screen, f"{text!r} is not on the screen:\n{screen}"
        # The review shows once, and no stale copy of the table is left behind.
        assert screen.count("[generated, 40 characters]") == 1, screen
        assert screen.count(f"of {live_site.name}") <= 1, screen
        assert "pk_live_0123456789abcdef" not in screen
        term.type("n")
        screen = term.wait_for("EXIT 1")
        assert "configuration not confirmed: nothing was written" in screen, screen
        assert not (live_site.path / ".env.production").exists()
    finally:
        term.close()


def test_plain_mode_shows_the_review_once(projects: Projects) -> None:
    site = projects.new({"compose.yaml": COMPOSE, "surefoot.toml": CONFIG}, env={"SUREFOOT_PROGRESS": "plain"})
    term = terminal(site)
    term.expect("Domain name: ")
    term.send("shop.example.com")
    term.expect("Payment provider API key: ")
    term.send("pk_live_0123456789abcdef")
    term.expect("Write these values to")
    term.send("y")
    assert term.finish() == 0, term.transcript
    configuring = term.transcript.split("post-deploy: started")[0]  # its summary shows the URL again
    for text in ("[generated, 40 characters]", "[hidden, 24 characters]", "https://shop.example.com/app"):
        assert configuring.count(text) == 1, term.transcript
