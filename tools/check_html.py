"""Open every page of the built book in headless Chromium: ``check_html.py [--verbose] HTML_DIR``.

Each page is served by its own ``http.server`` on 127.0.0.1 (a free port, in a thread, every
request logged with its status), loaded by ``chromium --headless --dump-dom`` with a fresh
profile, at most two pages at a time. Chromium is told to use that same server as its HTTP
proxy, so any request to a host other than 127.0.0.1 arrives there as a proxy request, is
refused and logged. A page fails, and the script exits 1 naming it and the reason, when:

- its rendered text contains a Python traceback (``Traceback (most recent call last)``),
  or an error output block (class ``traceback``) was rendered;
- an ``<img>`` points at a file that does not exist, or any local request got a 404
  (images, scripts, fonts, widget modules);
- a saved widget view (``<script type="application/vnd.jupyter.widget-view+json">``) was
  not rendered by the html-manager (no non-empty ``div.widget-subarea`` just before it, or
  only the html-manager's error box, e.g. for a widget module that is not built in);
- the page requested anything from a non-local host (a CDN, fonts, analytics).
"""

from __future__ import annotations

import argparse
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from bs4 import BeautifulSoup, Tag

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter",
    "--virtual-time-budget=15000", "--dump-dom",
]
# Chromium's own background services still call these hosts whatever the flags; a book page
# has no reason to, so requests to them are not blamed on the page.
BROWSER_SERVICE_HOSTS = {
    "accounts.google.com", "clients2.google.com", "clients2.googleusercontent.com",
    "update.googleapis.com", "optimizationguide-pa.googleapis.com",
    "safebrowsing.googleapis.com", "redirector.gvt1.com", "edgedl.me.gvt1.com",
}
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
IGNORED_404 = {"/favicon.ico"}
TRACEBACK_TEXT = "Traceback (most recent call last)"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PAGE_TIMEOUT_S = 60
WORKERS = 2


@dataclass
class Request:
    """One request the server saw: method, path (or external URL) and response status."""

    method: str
    path: str
    status: int
    external: bool = False


@dataclass
class RequestLog:
    """Thread-safe list of the requests one page made."""

    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that logs every request and refuses to proxy to other hosts."""

    log: RequestLog  # set per server by `serve`

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path.startswith(("http://", "https://")):
            self.refuse_external(self.path)
        else:
            super().do_GET()

    def do_CONNECT(self) -> None:  # noqa: N802
        self.refuse_external(f"https://{self.path}")

    def refuse_external(self, url: str) -> None:
        """Answer a proxy request with 403; record it unless Chromium itself made it."""
        if urlsplit(url).hostname not in BROWSER_SERVICE_HOSTS:
            self.log.add(Request(self.command, url, 403, external=True))
        self.send_error(403, "check_html: requests to non-local hosts are not allowed")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if str(code).isdigit() else 0
        if not self.path.startswith(("http://", "https://")) and self.command != "CONNECT":
            self.log.add(Request(self.command, urlsplit(self.path).path, status))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silence the default stderr access log; requests go to `self.log`."""


class Server:
    """A ThreadingHTTPServer for ``root`` on a free 127.0.0.1 port, run in a thread."""

    def __init__(self, root: Path) -> None:
        self.log = RequestLog()
        handler = type("PageHandler", (Handler,), {"log": self.log})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(handler, directory=str(root)))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def find_chromium() -> str:
    """Path of a Chromium executable, or exit with a message saying how to get one."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise SystemExit("check_html: no chromium found (Debian: apt install chromium)")


def render(chromium: str, url: str, proxy_port: int) -> str:
    """The DOM of ``url`` after scripts ran, as dumped by headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="check-html-profile-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--proxy-server=http://127.0.0.1:{proxy_port}", url]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=PAGE_TIMEOUT_S)
    if result.returncode != 0 or "<html" not in result.stdout:
        tail = result.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"chromium exited {result.returncode}: " + " | ".join(tail))
    return result.stdout


def traceback_problems(soup: BeautifulSoup) -> list[str]:
    """A Python traceback in the text, or a rendered error output."""
    problems = []
    text = " ".join(soup.get_text(" ").split())
    if TRACEBACK_TEXT in text or TRACEBACK_TEXT in soup.get_text():
        problems.append(f"page shows a Python traceback ({TRACEBACK_TEXT!r})")
    elif soup.select("div.output.traceback, div.traceback"):
        problems.append("page shows an error output (div.traceback)")
    return problems


def local_path(root: Path, page_url: str, src: str) -> Path | None:
    """File under ``root`` that ``src`` (relative to ``page_url``) names; None if not local."""
    url = urlsplit(urljoin(page_url, src))
    if url.scheme not in ("http", "https") or url.hostname != "127.0.0.1":
        return None
    return root / unquote(url.path).lstrip("/")


def image_problems(soup: BeautifulSoup, root: Path, page_url: str) -> list[str]:
    """``<img>`` elements whose source is missing from the build."""
    problems = []
    for img in soup.find_all("img"):
        src = img.get("src") or ""
        if not src:
            problems.append("an <img> has no src")
            continue
        if src.startswith("data:"):
            continue
        path = local_path(root, page_url, src)
        if path is not None and not path.is_file():
            problems.append(f"missing image {src!r}")
        elif path is None:
            problems.append(f"image from a non-local host {src!r}")
    return problems


def widget_rendered(view: Tag) -> bool:
    """True when the html-manager put a widget right before ``view`` (not its error box)."""
    prev = view.find_previous_sibling(True)
    return (prev is not None and prev.name == "div" and "widget-subarea" in prev.get("class", [])
            and prev.find(True) is not None
            and prev.find(class_="jupyter-widgets-error-widget") is None)


def view_model_id(view: Tag) -> str:
    """The ``model_id`` a widget-view script names, or ``?`` when it is not valid JSON."""
    try:
        return str(json.loads(view.get_text()).get("model_id", "?"))
    except (ValueError, AttributeError):
        return "?"


def widget_problems(soup: BeautifulSoup) -> list[str]:
    """Saved widget views that did not render."""
    views = soup.find_all("script", attrs={"type": WIDGET_VIEW})
    missing = [v for v in views if not widget_rendered(v)]
    if not missing:
        return []
    ids = ", ".join(view_model_id(v) for v in missing)
    return [f"{len(missing)} of {len(views)} saved widget(s) did not render (model ids: {ids})"]


def request_problems(log: RequestLog) -> list[str]:
    """Local 404s and any request to a non-local host."""
    problems = []
    for req in log.requests:
        if req.external:
            problems.append(f"request to a non-local host: {req.method} {req.path}")
        elif req.status == 404 and req.path not in IGNORED_404:
            problems.append(f"404 for {req.path}")
    return sorted(set(problems))


def check_page(chromium: str, root: Path, page: Path) -> tuple[Path, list[str], int]:
    """Render one page; return it, its problems and the number of requests it made."""
    rel = page.relative_to(root).as_posix()
    with Server(root) as server:
        url = f"http://127.0.0.1:{server.port}/{rel}"
        try:
            dom = render(chromium, url, server.port)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            return page, [f"could not render: {err}"], len(server.log.requests)
        time.sleep(0.05)  # let the server threads finish logging the last responses
    soup = BeautifulSoup(dom, "html.parser")
    problems = (traceback_problems(soup) + image_problems(soup, root, url)
                + widget_problems(soup) + request_problems(server.log))
    return page, problems, len(server.log.requests)


def pages_to_check(root: Path) -> list[Path]:
    """Every .html page except Sphinx's generated indexes and files under ``_*`` folders."""
    pages = []
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root)
        if rel.name in SKIP_PAGES or any(part.startswith(("_", ".")) for part in rel.parts[:-1]):
            continue
        pages.append(page)
    return pages


def check_all(root: Path, pages: list[Path]) -> list[tuple[str, list[str], int]]:
    """(page relative to ``root``, problems, number of requests) of each page, 2 at a time."""
    chromium = find_chromium()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = pool.map(partial(check_page, chromium, root), pages)
        return [(page.relative_to(root).as_posix(), problems, n) for page, problems, n in results]


def check_site(root: Path, verbose: bool = False) -> int:
    """Check every page of ``root``; print the problems; return the number of failing pages."""
    pages = pages_to_check(root)
    if not pages:
        raise SystemExit(f"check_html: no .html pages under {root}; build the book first")
    failing = 0
    for rel, problems, n_requests in check_all(root, pages):
        if problems:
            failing += 1
            print(f"FAIL {rel}: " + "; ".join(problems))
        elif verbose:
            print(f"ok   {rel} ({n_requests} requests)")
    print(f"check_html: {len(pages) - failing}/{len(pages)} pages ok")
    return failing


def main(argv: list[str]) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path, help="the built book, e.g. _build/html")
    parser.add_argument("-v", "--verbose", action="store_true", help="list passing pages too")
    args = parser.parse_args(argv)
    if not args.html_dir.is_dir():
        print(f"check_html: {args.html_dir} is not a folder; run `make book` first",
              file=sys.stderr)
        return 2
    start = time.monotonic()
    failing = check_site(args.html_dir.resolve(), verbose=args.verbose)
    print(f"check_html: {time.monotonic() - start:.1f} s")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
