"""Open every page of the built book in headless Chromium: ``check_html.py [--verbose] HTML_DIR``.

Each page is served by its own ``http.server`` on 127.0.0.1 (a free port, in a thread, every
request logged with its status), loaded by ``chromium --headless --dump-dom`` with a fresh
profile, at most two pages at a time, once at desktop width (1280 px) and once at phone
width (420 px). Chromium is told to use that same server as its HTTP proxy, so any request
to a host other than 127.0.0.1 arrives there as a proxy request, is refused and logged. The
server adds a small probe script (:data:`PROBE_JS`) at the top of every HTML page it serves:
it records JavaScript errors (uncaught exceptions, unhandled promise rejections,
``console.error``) and, once the page and its maths have rendered, the display equations
whose content lies outside what the reader can see or scroll to; its report is written into
the DOM that Chromium dumps. A page fails, and the script exits 1 naming it and the reason,
when:

- its rendered text contains a Python traceback (``Traceback (most recent call last)``),
  or an error output block (class ``traceback``) was rendered;
- an ``<img>`` points at a file that does not exist, or any local request got a 404
  (images, scripts, fonts, widget modules);
- a saved widget view (``<script type="application/vnd.jupyter.widget-view+json">``) was
  not rendered by the html-manager (no non-empty ``div.widget-subarea`` just before it, or
  only the html-manager's error box, e.g. for a widget module that is not built in);
- the page requested anything from a non-local host (a CDN, fonts, analytics);
- a JavaScript error was raised or logged (e.g. a script declared twice, a widget manager
  calling an API that is not there);
- a display equation loses part of itself at 420 px or 1280 px: content left of its
  scroll container (which no scrolling reaches) or cut off by an ``overflow: hidden`` box;
- a rendered saved widget has live-looking controls (an enabled slider, button, text box):
  without a kernel they change nothing, so the book must show the flip-book instead or
  disable them;
- the chapter's setup cell (the Colab install) shows its code, a code cell holding only
  imports shows its code unfolded (tag it ``hide-input``), or a ``hide-input`` cell has no
  working fold (its code not inside a closed ``<details>`` toggle);
- an ``<img>`` has no alt text or only its file name as alt text.
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
#: (name, Chromium window size) of each pass over every page.
WIDTHS = (("desktop", "1280,1000"), ("phone", "420,900"))
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
SETUP_CELL_TEXT = '"google.colab" in sys.modules'
PAGE_TIMEOUT_S = 60
WORKERS = 2
REPORT_ID = "check-html-report"
#: Controls a saved widget must not offer live (the html-manager's DOM for ipywidgets 8).
LIVE_CONTROLS = ("input:not([disabled])", "select:not([disabled])",
                 "textarea:not([disabled])", "button:not([disabled])",
                 ".noUi-target:not([disabled])")

#: Injected first into every served page; see the module docstring. Its report is a JSON
#: object {"errors": [...], "clipped": [...], "measured": bool} in <script id=REPORT_ID>.
PROBE_JS = """
(function () {
  var report = {errors: [], clipped: [], measured: false};
  function write() {
    if (!document.body) { return; }
    var el = document.getElementById("__REPORT_ID__");
    if (!el) {
      el = document.createElement("script");
      el.type = "application/json"; el.id = "__REPORT_ID__";
      document.body.appendChild(el);
    }
    el.textContent = JSON.stringify(report);
  }
  function add(message) { report.errors.push(String(message).slice(0, 300)); write(); }
  window.addEventListener("error", function (event) {
    if (!(event instanceof ErrorEvent)) { return; }  /* failed loads are 404s, logged apart */
    var where = event.filename ? " (" + event.filename.split("/").pop().split("?")[0] +
      ":" + event.lineno + ")" : "";
    add((event.message || "script error") + where);
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason;
    add("unhandled promise rejection: " + (reason && reason.message ? reason.message : reason));
  });
  var consoleError = console.error;
  console.error = function () {
    add("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
    return consoleError.apply(console, arguments);
  };
  function extent(el) {
    var box = el.getBoundingClientRect(), left = box.left, right = box.right;
    el.querySelectorAll("*").forEach(function (child) {
      var r = child.getBoundingClientRect();
      if (r.width > 0 && r.height > 0) {
        left = Math.min(left, r.left); right = Math.max(right, r.right);
      }
    });
    return {left: left, right: right};
  }
  /* Walk up from the equation through every box that clips (overflow other than visible).
     Content left of such a box is lost (scrolling starts at its left edge); content right
     of a hidden/clip box is lost; a scrolling box holds what is right of its edge, so
     outer boxes then only need to hold the scrolling box itself. */
  function lostParts(eq) {
    var shown = extent(eq), lostLeft = 0, lostRight = 0;
    for (var node = eq; node; node = node.parentElement) {
      var overflow = getComputedStyle(node).overflowX;
      if (overflow === "visible") { continue; }
      var box = node.getBoundingClientRect();
      lostLeft = Math.max(lostLeft, box.left - shown.left);
      if (/hidden|clip/.test(overflow)) {
        lostRight = Math.max(lostRight, shown.right - box.right);
      }
      if (/auto|scroll/.test(overflow)) { shown = {left: box.left, right: box.right}; }
    }
    lostLeft = Math.max(lostLeft, -shown.left);  /* the page itself cannot scroll left */
    var lost = [];
    if (lostLeft > 1) { lost.push(Math.round(lostLeft) + " px on the left"); }
    if (lostRight > 1) { lost.push(Math.round(lostRight) + " px on the right"); }
    return lost;
  }
  function measure() {
    report.clipped = [];
    var equations = document.querySelectorAll('mjx-container[display="true"]');
    if (!equations.length) { equations = document.querySelectorAll("div.math"); }
    equations.forEach(function (eq, index) {
      var lost = lostParts(eq);
      if (lost.length) {
        var text = (eq.getAttribute("aria-label") || eq.textContent || "").trim();
        report.clipped.push("equation " + (index + 1) + " (" + text.slice(0, 40) +
                            ") loses " + lost.join(" and "));
      }
    });
    report.measured = true;
    write();
  }
  window.addEventListener("load", function () {
    write();
    var mathjax = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    var ready = mathjax ? mathjax : Promise.resolve();
    ready.then(function () { setTimeout(measure, 1500); }, function () { measure(); });
  });
})();
""".replace("__REPORT_ID__", REPORT_ID)


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
    """Static file handler that logs every request, refuses to proxy to other hosts and
    adds :data:`PROBE_JS` to every HTML page."""

    log: RequestLog  # set per server by `serve`

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path.startswith(("http://", "https://")):
            self.refuse_external(self.path)
        elif urlsplit(self.path).path.endswith(".html"):
            self.send_probed_page()
        else:
            super().do_GET()

    def send_probed_page(self) -> None:
        """The HTML file with the probe script as the first thing in its ``<head>``."""
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "File not found")
            return
        page = path.read_text(encoding="utf-8", errors="replace")
        probe = f"<script>{PROBE_JS}</script>"
        head = page.lower().find("<head")
        if head >= 0:
            end = page.find(">", head) + 1
            page = page[:end] + probe + page[end:]
        else:
            page = probe + page
        body = page.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


class QuietServer(http.server.ThreadingHTTPServer):
    """Does not print a traceback when Chromium closes a connection early (a page is done)."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Server:
    """A ThreadingHTTPServer for ``root`` on a free 127.0.0.1 port, run in a thread."""

    def __init__(self, root: Path) -> None:
        self.log = RequestLog()
        handler = type("PageHandler", (Handler,), {"log": self.log})
        self.httpd = QuietServer(
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


def render(chromium: str, url: str, proxy_port: int, window: str = WIDTHS[0][1]) -> str:
    """The DOM of ``url`` after scripts ran, as dumped by headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="check-html-profile-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--window-size={window}",
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
    """Saved widget views that did not render, or that rendered with live-looking controls."""
    views = soup.find_all("script", attrs={"type": WIDGET_VIEW})
    problems = []
    missing = [v for v in views if not widget_rendered(v)]
    if missing:
        ids = ", ".join(view_model_id(v) for v in missing)
        problems.append(f"{len(missing)} of {len(views)} saved widget(s) did not render "
                        f"(model ids: {ids})")
    dead = [v for v in views if widget_rendered(v)
            and v.find_previous_sibling(True).select_one(", ".join(LIVE_CONTROLS))]
    if dead:
        ids = ", ".join(view_model_id(v) for v in dead)
        problems.append(f"{len(dead)} saved widget(s) show live-looking controls that do "
                        f"nothing without a kernel (model ids: {ids}): show the flip-book "
                        "(iclr22.viz.explore) or disable the controls")
    return problems


def probe_report(soup: BeautifulSoup) -> dict | None:
    """The probe's JSON report from the dumped DOM (None when the probe never wrote one)."""
    script = soup.find("script", id=REPORT_ID)
    if script is None:
        return None
    try:
        return json.loads(script.get_text())
    except ValueError:
        return None


def probe_problems(soup: BeautifulSoup, width: str) -> list[str]:
    """JavaScript errors and clipped equations the probe saw at one window width."""
    report = probe_report(soup)
    if report is None:
        return [f"at {width} width the page's load event never came (no probe report)"]
    problems = [f"JavaScript error: {message}" for message in report.get("errors", [])]
    problems += [f"at {width} width {clip}" for clip in report.get("clipped", [])]
    if not report.get("measured"):
        problems.append(f"at {width} width the equations were never measured "
                        "(MathJax did not finish)")
    return problems


def _code_lines(cell_input: Tag) -> list[str]:
    pre = cell_input.find("pre")
    text = pre.get_text() if pre else cell_input.get_text()
    return [line for line in text.splitlines() if line.strip()]


def _only_imports(lines: list[str]) -> bool:
    code = [line for line in lines if not line.lstrip().startswith("#")]
    return bool(code) and all(line.lstrip().startswith(("import ", "from ")) and
                              not line.startswith((" ", "\t")) for line in code)


def code_cell_problems(soup: BeautifulSoup) -> list[str]:
    """Setup and import-only cells whose code shows, and hide-input cells with no fold."""
    problems = []
    for cell in soup.select("div.cell"):
        cell_input = cell.select_one("div.cell_input")
        if cell_input is None:
            continue
        folded = cell_input.find_parent("details") is not None
        lines = _code_lines(cell_input)
        if "tag_hide-input" in cell.get("class", []):
            details = cell_input.find_parent("details")
            if details is None or details.has_attr("open") or details.find("summary") is None:
                problems.append("a hide-input cell has no closed fold (<details>) around its code")
        elif any(SETUP_CELL_TEXT in line for line in lines) and not folded:
            problems.append("the setup cell shows its code: tag it remove-input")
        elif _only_imports(lines) and not folded:
            problems.append(f"an import-only cell shows its code ({lines[0].strip()!r}...): "
                            "tag it hide-input")
    return sorted(set(problems))


def alt_text_problems(soup: BeautifulSoup) -> list[str]:
    """Images whose alt text is missing or only the image's file name."""
    bad = []
    for img in soup.find_all("img"):
        src, alt = (img.get("src") or ""), (img.get("alt") or "").strip()
        name = unquote(urlsplit(src).path).rsplit("/", 1)[-1] if not src.startswith("data:") \
            else ""
        if not alt or alt == src or (name and alt.rsplit("/", 1)[-1] == name):
            bad.append(name or "a data: image")
    if not bad:
        return []
    return [f"{len(bad)} image(s) without meaningful alt text (alt is empty or the file "
            f"name: {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})"]


def request_problems(log: RequestLog) -> list[str]:
    """Local 404s and any request to a non-local host."""
    problems = []
    for req in log.requests:
        if req.external:
            problems.append(f"request to a non-local host: {req.method} {req.path}")
        elif req.status == 404 and req.path not in IGNORED_404:
            problems.append(f"404 for {req.path}")
    return sorted(set(problems))


def check_page(chromium: str, root: Path, page: Path,
               widths: tuple[tuple[str, str], ...] = WIDTHS) -> tuple[Path, list[str], int]:
    """Render one page at each width; return it, its problems and the requests it made.

    The DOM checks run on the first width's render, the probe's checks on every width's."""
    rel = page.relative_to(root).as_posix()
    problems: list[str] = []
    with Server(root) as server:
        url = f"http://127.0.0.1:{server.port}/{rel}"
        for width, window in widths:
            try:
                dom = render(chromium, url, server.port, window)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                return page, [f"could not render at {width} width: {err}"], \
                    len(server.log.requests)
            soup = BeautifulSoup(dom, "html.parser")
            if width == widths[0][0]:
                problems += (traceback_problems(soup) + image_problems(soup, root, url)
                             + alt_text_problems(soup) + widget_problems(soup)
                             + code_cell_problems(soup))
            problems += probe_problems(soup, width)
        time.sleep(0.05)  # let the server threads finish logging the last responses
    problems += request_problems(server.log)
    # the same JavaScript error at both widths is one problem
    return page, list(dict.fromkeys(problems)), len(server.log.requests)


def pages_to_check(root: Path) -> list[Path]:
    """Every .html page except Sphinx's generated indexes and files under ``_*`` folders."""
    pages = []
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root)
        if rel.name in SKIP_PAGES or any(part.startswith(("_", ".")) for part in rel.parts[:-1]):
            continue
        pages.append(page)
    return pages


def check_all(root: Path, pages: list[Path], widths: tuple[tuple[str, str], ...] = WIDTHS,
              ) -> list[tuple[str, list[str], int]]:
    """(page relative to ``root``, problems, number of requests) of each page, 2 at a time."""
    chromium = find_chromium()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = pool.map(partial(check_page, chromium, root, widths=widths), pages)
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
