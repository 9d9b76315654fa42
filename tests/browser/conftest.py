"""Browser fixtures: the app served by a real web server and a real worker in processes of their
own, a local STARTTLS + AUTH SMTP server (tests/conftest.py), and Debian's Chromium driven by
Playwright.

Where Chromium (or Playwright) is missing the browser tests are skipped with the reason, except
under CI (the CI environment variable set), where a skip would hide that they never ran: there
they fail instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from tests.ci_support import unavailable
from tests.smtp_servers import SMTPServer
from tests.workers import PROJECT_ROOT, LiveApp, WebProcess, WorkerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The width the screenshots in the README are taken at.
VIEWPORT = {"width": 1280, "height": 800}
# Generous: two cores shared with other engineers' test runs.
ACTION_TIMEOUT_MS = 20_000
# LAMPLIGHT_MAIL_SCREENSHOTS=1 refreshes the committed screenshots; otherwise they go to the
# test's temporary folder, so a test run never leaves the work tree changed.
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"


def _unavailable(reason: str) -> NoReturn:
    unavailable(reason, "browser tests")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM} (on Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    # Lets fixtures tell whether the test failed, to keep what the browser showed and what the
    # processes logged at that moment.
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return request.node.stash.get(_FAILED, False)


@pytest.fixture
def page(
    chromium: Browser, live_app: LiveApp, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    """A fresh browser profile (no cookies) on the live app, so `page.goto("/login")` works;
    on failure its last page is kept next to the processes' logs."""
    context = chromium.new_context(
        base_url=live_app.url, viewport=VIEWPORT, accept_downloads=True, locale="en-GB"
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    tab = context.new_page()
    # The CSP has no unsafe-inline: an inline script or style added to a template is blocked
    # in a real browser, which says so on the console. Any such message fails the test, except
    # from a message's own HTML shown in its sandboxed frame (about:srcdoc), whose remote images
    # and scripts are meant to be blocked.
    blocked: list[str] = []

    def on_console(message) -> None:
        if "Content Security Policy" not in message.text:
            return
        if message.location.get("url") == "about:srcdoc":
            return
        blocked.append(f"{message.text} (at {message.location.get('url')})")

    tab.on("console", on_console)
    yield tab
    assert not blocked, f"the Content-Security-Policy blocked something: {blocked}"
    if _failed(request):
        tab.screenshot(path=tmp_path / "failure.png", full_page=True)
        (tmp_path / "failure.html").write_text(tab.content())
        print(f"The browser's last page: {tmp_path / 'failure.png'} ({tab.url})")
    context.close()


@pytest.fixture
def screenshot(tmp_path: Path):
    """screenshot(page, name): the whole page at 1280 wide, saved as <name>.png in the test's
    folder, or in docs/screenshots when LAMPLIGHT_MAIL_SCREENSHOTS is set."""
    folder = SCREENSHOTS if os.environ.get("LAMPLIGHT_MAIL_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    def take(tab: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        tab.screenshot(path=path, full_page=True, animations="disabled", caret="hide")
        return path

    return take


# --- The app, served for real --------------------------------------------------------------


@contextmanager
def serve(
    env: dict[str, str], smtp: SMTPServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LiveApp]:
    """Web server and worker with `env`, until the block ends; their logs printed on failure."""
    web = WebProcess(env, tmp_path / "web.log")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    app = LiveApp(web, worker, smtp)
    try:
        app.wait_until_ready()
        yield app
        if _failed(request):
            print(app.logs())
    finally:
        worker.stop()
        web.stop()


@pytest.fixture
def serve_app(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[dict[str, str], SMTPServer], AbstractContextManager[LiveApp]]:
    """`serve` for this test: `with serve_app(env, smtp) as app:` in a test's own live_app."""
    return functools.partial(serve, tmp_path=tmp_path, request=request)


@pytest.fixture
def live_app(
    worker_env: dict[str, str],
    trusted_ca: Path,
    smtp_server: SMTPServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[LiveApp]:
    """Web server and worker on the test's database and Redis, trusting the test CA."""
    with serve(
        {**worker_env, "SSL_CERT_FILE": str(trusted_ca)}, smtp_server, tmp_path, request
    ) as app:
        yield app
