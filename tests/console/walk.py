#!/usr/bin/env python3
"""Walks the leadstream web console in headless Chromium against a real server.

    python3 tests/console/walk.py --bin target/debug/leadstream --screenshots DIR

Starts its own server (free port, temporary data dir, private delivery targets allowed),
an organization with an admin, a read and an ingest key, and a local HTTP receiver that
answers 200 on /ok... and 500 on /fail... . Then it signs in through the console and does
every action of every page, checking after each both what the page shows and what the API
holds (queried directly with urllib). It fails on any JavaScript console error, any CSP
violation and any 5xx, and saves a screenshot of every page to --screenshots.

Needs chromium and chromedriver (/usr/bin/chromium, /usr/bin/chromedriver) and selenium
(tests/console/requirements.txt). Exits non-zero on the first failure, with a screenshot
named FAILED-<step>.png.

tests/console/firefox.py (the same console in Firefox) imports Server, Receiver, the helpers
above the browser section and CSP_LISTENER from here: keep them free of Chromium.
"""

import argparse
import csv
import http.server
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from selenium import webdriver
from selenium.common.exceptions import (
    JavascriptException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

ORG = 42
PHONE_A = "+15551234567"  # has a contact record, many events, a mastery_purchase
PHONE_B = "+15557654321"  # events but no contact record
PHONE_C = "+15550001111"  # opted out
PHONE_D = "+15550002222"  # a WhatsApp conversation of 52 messages
STARTED = time.monotonic()


class Failure(AssertionError):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def log(msg):
    print(f"[{time.monotonic() - STARTED:6.1f}s] {msg}", flush=True)


def iso(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------- receiver


class Receiver:
    """A tiny webhook receiver: 200 for /ok..., 500 for /fail..., 404 otherwise."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append((self.path, body))
                if self.path.startswith("/ok"):
                    code, text = 200, b'{"ok":true}'
                elif self.path.startswith("/fail"):
                    code, text = 500, b'{"error":"receiver says no"}'
                else:
                    code, text = 404, b"{}"
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, prefix):
        with self.lock:
            return [p for p, _ in self.requests if p.startswith(prefix)]

    def stop(self):
        self.server.shutdown()


# ---------------------------------------------------------------- server and API


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.text = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"HTTP {self.status} {self.text[:300]}"


class Server:
    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="leadstream-console-")
        self.proc = None
        self.base = None
        self.keys = {}

    def cli(self, *args):
        out = subprocess.run([self.binary, *args, "--data-dir", self.dir], check=True,
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip().splitlines()

    def start(self):
        self.cli("org", "create", "--id", str(ORG), "--name", "Console walk")
        for scope in ("admin", "read", "ingest"):
            self.keys[scope] = self.cli("api-key", "create", "--org", str(ORG), "--scope", scope)[-1].strip()
        env = dict(os.environ)
        env["LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS"] = "true"
        # Two attempts a second apart: failed deliveries become final within seconds.
        env["LEADSTREAM_DELIVERY_RETRY_SCHEDULE"] = "1s"
        env.setdefault("RUST_LOG", "warn")
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.dir, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise Failure(f"the server exited with {self.proc.returncode}; see {self.dir}/serve.log")
                continue
            m = re.search(r"listening on (http://[0-9.:\[\]]+)", line)
            if m:
                self.base = m.group(1)
                break
        check(self.base, "the server never printed its address")
        threading.Thread(target=self._drain, daemon=True).start()
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/readyz", key=None).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failure("the server never became ready")

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    def close(self):
        """Stops the server and removes its data dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def call(self, method, path, body=None, key="admin", ctype="application/json"):
        headers = {"Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {self.keys[key]}"
        data = None
        if body is not None:
            if isinstance(body, (bytes, str)):
                data = body.encode() if isinstance(body, str) else body
            else:
                data = json.dumps(body).encode()
            headers["Content-Type"] = ctype
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return Resp(r.status, r.headers, r.read().decode())
        except urllib.error.HTTPError as e:
            return Resp(e.code, e.headers, e.read().decode())

    def ok(self, method, path, body=None, key="admin", ctype="application/json"):
        r = self.call(method, path, body, key, ctype)
        check(200 <= r.status < 300, f"{method} {path} answered {r}")
        return r.json

    def publish(self, event_type, n):
        """n outbound events of event_type: one delivery each to every endpoint subscribed."""
        for i in range(n):
            self.ok("POST", "/api/v1/outbound-events", {"eventType": event_type, "payload": {"n": i, "contactName": "Ana"}})

    def wait_no_pending(self, endpoint_id, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.ok("GET", f"/api/v1/deliveries?endpointId={endpoint_id}&status=pending&limit=1")
            if not d["data"]:
                return
            time.sleep(0.3)
        raise Failure(f"deliveries to endpoint {endpoint_id} still pending after {timeout}s")


# ---------------------------------------------------------------- browser

CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sourceFile || '') + ':' + (e.lineNumber || ''));
});
"""


class Browser:
    def __init__(self, base, shots):
        self.base = base
        self.shots = shots
        opts = webdriver.ChromeOptions()
        # The background-networking flags: with no internet, Chromium's own calls home
        # would fail (and be retried) at every start.
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,900", "--lang=en-US", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-quic"):
            opts.add_argument(a)
        if os.path.exists("/usr/bin/chromium"):
            opts.binary_location = "/usr/bin/chromium"
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
        self.d.set_script_timeout(20)
        self.d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_LISTENER})
        origin = base
        try:
            self.d.execute_cdp_cmd("Browser.grantPermissions", {
                "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        except Exception:  # older Chromium: the console falls back to execCommand
            pass
        self.viewport(1280, 900)
        self.allowed_statuses = set()

    def viewport(self, w, h):
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 600})

    def quit(self):
        self.d.quit()

    # -- waiting and finding

    def wait(self, fn, message, timeout=15):
        last = [None]

        def cond(_):
            try:
                v = fn()
                last[0] = v
                return v
            except (StaleElementReferenceException, JavascriptException):
                return False

        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(cond)
        except TimeoutException:
            raise Failure(f"timed out after {timeout}s waiting for: {message}; page errors: {self.page_errors()}")

    def all(self, css, root=None):
        return (root or self.d).find_elements(By.CSS_SELECTOR, css)

    def one(self, css, root=None, timeout=15):
        def find():
            for e in self.all(css, root):
                if e.is_displayed():
                    return e
            return None
        return self.wait(find, f"a visible {css}", timeout)

    def xp(self, xpath, timeout=15):
        def find():
            for e in self.d.find_elements(By.XPATH, xpath):
                if e.is_displayed():
                    return e
            return None
        return self.wait(find, f"a visible {xpath}", timeout)

    def button(self, text, root=None, timeout=15):
        def find():
            for b in self.all("button, a.btn", root):
                if b.is_displayed() and b.text.strip() == text:
                    return b
            return None
        return self.wait(find, f'a button "{text}"', timeout)

    def click(self, el):
        if isinstance(el, str):
            el = self.one(el)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        self.wait(lambda: el.is_enabled(), "the button to be enabled")
        el.click()
        return el

    def input(self, label, root=None):
        """The control a <label> names: exact label text (a switch's label: its text part)."""
        def find():
            for lab in self.all("label", root):
                if not lab.is_displayed():
                    continue
                text = lab.text.strip()
                if text == label or text.split("\n")[0].strip() == label or re.sub(r"\s+(on|off)$", "", text) == label:
                    fid = lab.get_attribute("for")
                    if fid:
                        return self.d.find_element(By.ID, fid)
                    inner = lab.find_elements(By.CSS_SELECTOR, "input, select, textarea")
                    if inner:
                        return inner[0]
            return None
        return self.wait(find, f'a field labelled "{label}"')

    def type(self, label, text, root=None):
        el = self.input(label, root)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        # Select and delete (not clear()): the page hears an input event, as from a person.
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(Keys.DELETE)
        if el.get_attribute("value"):
            el.clear()
        if text:
            el.send_keys(text)
        return el

    def set_value(self, label, value, root=None):
        """For inputs send_keys handles poorly (datetime-local): set the value and fire input."""
        el = self.input(label, root)
        self.d.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
            "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));", el, value)
        return el

    def choose(self, label, visible_text=None, value=None, root=None):
        sel = Select(self.input(label, root))
        if value is not None:
            sel.select_by_value(value)
        else:
            sel.select_by_visible_text(visible_text)

    def dialog(self):
        return self.one("dialog[open]")

    def no_dialog(self):
        self.wait(lambda: not self.all("dialog[open]"), "the dialog to close")

    def go(self, hash_, page):
        self.d.execute_script("location.hash = arguments[0]", hash_)
        self.on_page(page)

    def on_page(self, page):
        self.wait(lambda: self.d.execute_script(
            "const p = document.querySelector('.page'); return p && p.dataset.page === arguments[0]", page),
            f"the {page} page")

    def text(self, css):
        return self.one(css).text.strip()

    def page_errors(self):
        try:
            return [e.text for e in self.all(".error") if e.is_displayed()]
        except Exception:
            return []

    def shot(self, name):
        """A PNG of the whole page (not only the viewport), from the top."""
        import base64
        path = os.path.join(self.shots, name)
        self.d.execute_script("window.scrollTo(0, 0); const t = document.getElementById('toasts'); if (t) t.replaceChildren();")
        time.sleep(0.15)  # let a transition finish painting
        m = self.d.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = m.get("cssContentSize") or m["contentSize"]
        vw = m.get("cssLayoutViewport", m.get("layoutViewport"))["clientWidth"]
        shot = self.d.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": vw, "height": max(size["height"], 1), "scale": 1}})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    def clipboard(self):
        try:
            return self.d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "navigator.clipboard.readText().then(done, () => done(null));")
        except Exception:
            return None

    # -- the checks every step ends with

    def check_logs(self, where):
        problems = []
        for e in self.d.get_log("browser"):
            msg = e.get("message", "")
            level = e.get("level")
            if "Content Security Policy" in msg or "Refused to" in msg:
                problems.append(f"CSP: {msg}")
            elif level == "SEVERE":
                if e.get("source") == "network":
                    # An API answering 4xx is part of the walk (a 400 shown inline, a 409,
                    # a 403 for the read key); anything else (a 5xx, a missing console file) is not.
                    m = re.search(r"(https?://\S+) - Failed to load resource: the server responded with a status of (\d+)", msg)
                    if m and "/api/" in m.group(1) and 400 <= int(m.group(2)) < 500:
                        continue
                problems.append(f"console error: {msg}")
        csp = self.d.execute_script("return window.__csp || []")
        problems += [f"CSP violation: {v}" for v in csp]
        check(not problems, f"browser problems after {where}:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- static checks

CONSOLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "connectors", "console")


def static_checks():
    """What the CSP would refuse or what invites XSS, found in the files themselves."""
    bad = []
    files = []
    for root, _, names in os.walk(CONSOLE_DIR):
        files += [os.path.join(root, n) for n in names]
    check(any(f.endswith("index.html") for f in files), f"no index.html under {CONSOLE_DIR}")
    rules = {
        ".js": [r"\.innerHTML\b", r"\.outerHTML\b", r"insertAdjacentHTML", r"document\.write", r"\beval\(",
                r"new Function\(", r"setAttribute\(\s*['\"]style", r"\.cssText", r"from\s+['\"]https?:", r"import\(\s*['\"]https?:"],
        ".html": [r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"<style", r"(src|href)=\"https?:"],
        ".css": [r"@import", r"url\(\s*['\"]?https?:"],
    }
    for f in files:
        ext = os.path.splitext(f)[1]
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        for rule in rules.get(ext, []):
            for m in re.finditer(rule, text):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{os.path.relpath(f, CONSOLE_DIR)}:{line}: {m.group(0)!r}")
    check(not bad, "console files with what the CSP forbids or what invites XSS:\n  " + "\n  ".join(bad))


# ---------------------------------------------------------------- the walk


class Walk:
    def __init__(self, server, receiver, browser):
        self.s = server
        self.r = receiver
        self.b = browser
        self.ids = {}

    # ---------- seeding through the API

    def seed_lead_events(self):
        now = datetime.now(timezone.utc)
        def batch(event_type, events):
            r = self.s.ok("POST", "/api/v1/webhooks/lead-events",
                          {"organizationId": ORG, "eventType": event_type, "events": events})
            check(r["inserted"] == len(events), f"seeding {event_type}: {r}")
        batch("page_view", [{"phoneE164": PHONE_A, "occurredAt": iso(now - timedelta(seconds=50 * i + 5)),
                             "metadata": {"page": f"/p/{i}"}} for i in range(60)])
        batch("mastery_purchase", [{"phoneE164": PHONE_A, "occurredAt": iso(now - timedelta(minutes=10)),
                                    "metadata": {"orderId": "ord_9F2", "amountUsd": 297}}])
        batch("trial_started", [{"phoneE164": PHONE_A, "occurredAt": iso(now - timedelta(minutes=20))}])
        batch("webinar_attended", [{"phoneE164": PHONE_B, "occurredAt": iso(now - timedelta(minutes=5))}])
        self.s.ok("PUT", f"/api/v1/contacts/{urllib.parse.quote(PHONE_A)}",
                  {"email": "ann@example.com", "fullName": "Ann Lead", "firstName": "Ann", "lastName": "Lead",
                   "metadata": {"plan": "gold"}})

    # ---------- steps

    def signin(self, scope, first=False, expect=None):
        expect = expect or scope
        b = self.b
        if first:
            b.d.get(self.s.base + "/")
        b.one("input[name=key]")
        check(b.xp("//label[normalize-space(text())='API key']") is not None, 'no field labelled "API key"')
        if first:
            b.shot("signin.png")
            b.type("API key", "lsk_not_a_real_key")
            b.click(b.button("Sign in"))
            b.wait(lambda: any("invalid credentials" in t for t in b.page_errors()),
                   "the 401 shown under the API key field")
            check(self.s.call("GET", "/api/v1/api-keys/current", key=None).status == 401, "no key should be 401")
        b.type("API key", self.s.keys[scope])
        b.click(b.button("Sign in"))
        b.one("#sign-out")
        b.wait(lambda: b.text("#key-scope") == expect, f"the header to show scope {expect}")
        check(b.text("#org-id") == str(ORG), f"the header shows org {b.text('#org-id')}, not {ORG}")
        stored = b.d.execute_script("return [sessionStorage.getItem('leadstream.apiKey'), localStorage.length]")
        check(stored[0] == self.s.keys[scope] and stored[1] == 0, f"the key must be in sessionStorage only: {stored}")

    def signout(self):
        b = self.b
        b.click("#sign-out")
        b.one("input[name=key]")
        check(b.d.execute_script("return sessionStorage.getItem('leadstream.apiKey')") is None,
              "Sign out must forget the key")

    def navigation(self):
        b = self.b
        b.on_page("overview")
        labels = [a.text.strip() for a in b.all("nav.nav a")]
        check(labels == ["Overview", "Webhooks", "Deliveries", "Triggers", "Campaigns", "Contacts", "Settings"],
              f"navigation labels: {labels}")
        b.click(b.xp("//nav[@class='nav']//a[text()='Webhooks']"))
        b.on_page("webhooks")
        current = [a.text for a in b.all("nav.nav a[aria-current=page]")]
        check(current == ["Webhooks"], f"aria-current marks {current}")
        b.check_logs("sign in and navigation")

    def webhooks(self):
        b, s, r = self.b, self.s, self.r
        b.go("#/webhooks", "webhooks")
        b.wait(lambda: "Active Webhooks: 0" in b.text("#active-webhooks"), "the counter at 0")

        # Escape closes the dialog and focus goes back to the button.
        b.click("#new-webhook")
        b.dialog()
        b.input("Endpoint URL").send_keys(Keys.ESCAPE)
        b.no_dialog()
        check(b.d.switch_to.active_element.get_attribute("id") == "new-webhook", "focus returns to New Webhook")

        # A bad URL: the 400 is shown in the dialog, under the field; nothing is stored.
        b.click("#new-webhook")
        dlg = b.dialog()
        b.type("Endpoint URL", "not a url", dlg)
        b.click(b.button("Create Webhook", dlg))
        err = b.wait(lambda: [e for e in b.all(".field .error", dlg) if e.is_displayed()], "the 400 under the URL field")
        check(err[0].text.strip(), "the inline error is empty")
        check(s.ok("GET", "/api/webhooks/get") == [], "a refused webhook must not be stored")
        # Then good ones.
        for name, path in (("ok", "/ok/main"), ("fail", "/fail/main"), ("temp", "/ok/temporary")):
            if name != "ok":
                b.click("#new-webhook")
                dlg = b.dialog()
            b.type("Endpoint URL", r.url(path), dlg)
            b.click(b.button("Create Webhook", dlg))
            b.no_dialog()
            b.wait(lambda: any(e.text == r.url(path) for e in b.all(".webhook-url")), f"the new row {path}")
            found = [e for e in s.ok("GET", "/api/webhooks/get") if e["webhook"] == r.url(path)]
            check(len(found) == 1, f"the API holds {path} once: {found}")
            self.ids[name] = found[0]["id"]
        b.wait(lambda: "Active Webhooks: 3" in b.text("#active-webhooks"), "the counter at 3")
        ids = [int(e.text) for e in b.all(".webhook-id")]
        check(ids == sorted(ids, reverse=True), f"newest first: {ids}")

        # Many endpoints: Load more follows the Link header. Disabled, so they receive nothing.
        bulk = []
        for i in range(52):
            e = s.ok("POST", "/api/webhooks/create", {"webhook": f"https://bulk{i}.example.com/hook"})["data"]
            s.ok("PATCH", f"/api/webhooks/{e['id']}", {"enabled": False})
            bulk.append(e["id"])
        b.go("#/overview", "overview")
        b.go("#/webhooks", "webhooks")
        b.wait(lambda: len(b.all(".webhook-id")) == 50, "the first page of 50")
        first = s.call("GET", "/api/webhooks/get?limit=50")
        check(first.headers.get("Link") and 'rel="next"' in first.headers.get("Link"), f"the API pages with Link: {first.headers}")
        b.wait(lambda: "Active Webhooks: 3" in b.text("#active-webhooks"), "disabled endpoints are not active")
        b.click(b.button("Load more"))
        b.wait(lambda: len(b.all(".webhook-id")) == 55, "all 55 after Load more")
        check(not [x for x in b.all(".more .btn") if x.is_displayed()], "no Load more on the last page")
        # At 1280 px seed 002's columns (id, URL, created) lead, and the table fits without scrolling.
        heads = [th.text.strip() for th in b.all(".table-wrap thead th")]
        check(heads[:3] == ["id", "URL", "created"], f"the webhook table's columns: {heads}")
        fit = b.d.execute_script("const w = document.querySelector('.table-wrap'); return [w.scrollWidth, w.clientWidth, window.innerWidth]")
        check(fit[2] == 1280 and fit[0] <= fit[1], f"the webhook table fits 1280 px: scrollWidth, clientWidth, viewport {fit}")
        first_row = b.all(".table-wrap tbody tr")[0]
        cells = [td.text.strip() for td in b.all("td", first_row)[:3]]
        newest = s.ok("GET", "/api/webhooks/get?limit=1")[0]
        check(cells[0] == str(newest["id"]) and cells[1].startswith(newest["webhook"]) and cells[2],
              f"the first row's id, URL, created: {cells} vs {newest}")
        created = b.one("time", b.all("td", first_row)[2]).get_attribute("datetime")
        check(created == newest["created_at"], f"created is the API's created_at: {created}")
        b.shot("webhooks.png")
        for i in bulk:
            s.ok("DELETE", f"/api/webhooks/delete?id={i}")

        # Search by URL.
        b.go("#/overview", "overview")
        b.go("#/webhooks", "webhooks")
        b.type("Search by URL", "/fail/")
        b.wait(lambda: [e.text for e in b.all(".webhook-url")] == [r.url("/fail/main")], "only the /fail/ endpoint")
        api = [e["webhook"] for e in s.ok("GET", "/api/webhooks/get?search=%2Ffail%2F")]
        check(api == [r.url("/fail/main")], f"the API's search agrees: {api}")
        b.type("Search by URL", "")
        b.wait(lambda: len(b.all(".webhook-url")) == 3, "the three endpoints again")

        # Copy a URL.
        row = b.xp(f"//tr[.//span[text()='{r.url('/ok/main')}']]")
        copy = [x for x in b.all("button", row) if x.text == "Copy"][0]
        b.click(copy)
        b.wait(lambda: copy.text == "Copied", 'the copy button to say "Copied"')
        clip = b.clipboard()
        check(clip in (None, r.url("/ok/main")), f"the clipboard holds {clip!r}")

        # Delete via the confirmation dialog.
        b.click(f"button[data-delete='{self.ids['temp']}']")
        dlg = b.dialog()
        check("cannot be undone" in dlg.text, "the confirmation says what happens")
        b.click(b.button("Delete", dlg))
        b.no_dialog()
        b.wait(lambda: r.url("/ok/temporary") not in [e.text for e in b.all(".webhook-url")], "the deleted row to go")
        check(s.call("GET", f"/api/webhooks/{self.ids['temp']}").status == 404, "the deleted endpoint is 404")
        b.wait(lambda: "Active Webhooks: 2" in b.text("#active-webhooks"), "the counter at 2")
        b.check_logs("webhooks")

        # A row opens the endpoint's page.
        b.click(b.xp(f"//a[@class='webhook-id' and text()='{self.ids['ok']}']"))
        b.on_page("webhooks/:id")

    def webhook(self):
        b, s = self.b, self.s
        eid = self.ids["ok"]
        b.go(f"#/webhooks/{eid}", "webhooks/:id")
        b.one("#endpoint-form")
        # A bad timeout: the 400 under the Timeout field, nothing changed.
        b.type("Timeout", "99s")
        b.click("#save-endpoint")
        b.wait(lambda: b.input("Timeout").get_attribute("aria-invalid") == "true", "the 400 under Timeout")
        check(s.ok("GET", f"/api/webhooks/{eid}")["timeout"] == "5s", "a refused PATCH changes nothing")
        # Good values.
        all_types = b.one("#all-event-types")
        if all_types.is_selected():
            b.click(all_types)
        b.type("Event types", "lead_test\nappointment_booked")
        b.type("Description", "Console walk endpoint")
        b.type("Timeout", "10s")
        b.type("Max in flight", "8")
        b.type("Rate limit (deliveries / s)", "50")
        b.click("#save-endpoint")
        b.wait(lambda: "Saved" in b.text("#endpoint-form .success"), "Saved")
        e = s.ok("GET", f"/api/webhooks/{eid}")
        check(e["eventTypes"] == ["lead_test", "appointment_booked"] and e["timeout"] == "10s"
              and e["maxInFlight"] == 8 and e["rateLimit"] == 50 and e["description"] == "Console walk endpoint",
              f"the API holds the patch: {e}")
        check(b.text("#endpoint-timeout") == "10s", "the page shows the new timeout")
        check("lead_test" in b.text("#endpoint-event-types"), "the page shows the subscriptions")
        # Disable, then enable again.
        b.click(b.input("Enabled"))
        b.click("#save-endpoint")
        b.wait(lambda: "disabled" in b.text("#endpoint-status"), "disabled")
        check(s.ok("GET", f"/api/webhooks/{eid}")["enabled"] is False, "the API has it disabled")
        b.click(b.input("Enabled"))
        b.click("#save-endpoint")
        b.wait(lambda: "enabled" in b.text("#endpoint-status"), "enabled again")
        check(s.ok("GET", f"/api/webhooks/{eid}")["enabled"] is True, "the API has it enabled")
        # Reveal, then rotate, the secret.
        b.click("#reveal-secret")
        shown = b.wait(lambda: b.text("#secret-value"), "the secret")
        check(shown == s.ok("GET", f"/api/webhooks/{eid}/secret")["key"] and shown.startswith("whsec_"),
              f"the revealed secret is the API's: {shown}")
        b.click("#rotate-secret")
        b.click(b.button("Rotate secret", b.dialog()))
        b.no_dialog()
        b.wait(lambda: b.text("#secret-value") != shown, "a new secret")
        rotated = b.text("#secret-value")
        check(rotated == s.ok("GET", f"/api/webhooks/{eid}/secret")["key"], "the rotated secret is the API's")
        b.shot("webhook.png")
        b.check_logs("webhook page")

    def deliveries(self):
        b, s = self.b, self.s
        ok, fail = self.ids["ok"], self.ids["fail"]
        self.s.publish("lead_test", 6)
        self.s.wait_no_pending(ok)
        self.s.wait_no_pending(fail)
        api_failed = s.ok("GET", f"/api/v1/deliveries?status=failed&limit=1000")["data"]
        check(len(api_failed) == 6 and all(d["endpointId"] == fail for d in api_failed), f"6 failed deliveries: {api_failed}")
        check(len(self.r.hits("/ok/main")) == 6 and len(self.r.hits("/fail/main")) == 12,
              f"the receiver saw 6 deliveries to /ok/main and 2 attempts of 6 to /fail/main: {len(self.r.hits('/ok/main'))}, {len(self.r.hits('/fail/main'))}")
        b.go("#/deliveries", "deliveries")
        b.wait(lambda: len(b.all(".delivery-id")) == 12, "12 deliveries")
        # Filter: failed only.
        b.choose("Status", "Failed")
        b.click("#apply-filters")
        b.wait(lambda: "status=failed" in b.d.current_url and len(b.all(".delivery-id")) == 6
               and all(p.text == "failed" for p in b.all("td .pill")), "6 failed rows")
        shown = [e.text for e in b.all(".delivery-id")]
        check(shown == [d["id"] for d in api_failed], "the page lists what the API lists")
        # Paging: 5 a page, Load more by cursor.
        b.choose("Status", "Any")
        b.choose("Endpoint", value=str(ok))
        b.type("Page size", "5")
        b.click("#apply-filters")
        b.wait(lambda: len(b.all(".delivery-id")) == 5, "a page of 5")
        b.click(b.button("Load more"))
        b.wait(lambda: len(b.all(".delivery-id")) == 6 and not [x for x in b.all(".more .btn") if x.is_displayed()],
               "6 after Load more, then no more")
        api_ok = [d["id"] for d in s.ok("GET", f"/api/v1/deliveries?endpointId={ok}&limit=1000")["data"]]
        check([e.text for e in b.all(".delivery-id")] == api_ok, "the paged list is the API's")
        b.go(f"#/deliveries?status=failed&endpointId={fail}&sort=attempts&order=asc", "deliveries")
        b.wait(lambda: len(b.all(".delivery-id")) == 6, "6 failed rows sorted by attempts")
        # A time range (datetime-local, local time, sent as UTC): all of them, then none.
        b.go("#/deliveries", "deliveries")
        b.choose("Status", "Failed")
        b.set_value("Created since", (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
        b.set_value("Created until", (datetime.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
        b.click("#apply-filters")
        b.wait(lambda: "since=" in b.d.current_url and "until=" in b.d.current_url and len(b.all(".delivery-id")) == 6, "6 failed in the range")
        q = urllib.parse.parse_qs(b.d.current_url.split("?", 1)[1])
        check(q["since"][0].endswith("Z") and len(s.ok("GET", "/api/v1/deliveries?status=failed&since=" + urllib.parse.quote(q["since"][0])
                                                       + "&until=" + urllib.parse.quote(q["until"][0]))["data"]) == 6, f"the API agrees on the range: {q}")
        b.set_value("Created since", (datetime.now() + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"))
        b.click("#apply-filters")
        b.wait(lambda: not b.all(".delivery-id") and "No delivery matches" in b.text(".empty"), "none in a future range")
        b.go(f"#/deliveries?status=failed&endpointId={fail}&sort=attempts&order=asc", "deliveries")
        b.wait(lambda: len(b.all(".delivery-id")) == 6, "6 failed rows sorted by attempts")
        b.shot("deliveries.png")
        b.check_logs("deliveries")

        # One delivery: payload, attempts, Retry.
        target = api_failed[0]["id"]
        self.ids["delivery"] = target
        b.click(b.xp(f"//a[contains(@class,'delivery-id') and text()='{target}']"))
        b.on_page("deliveries/:id")
        payload = b.wait(lambda: b.text("#delivery-payload"), "the payload")
        check(json.loads(payload)["contactName"] == "Ana", f"the payload: {payload}")
        b.wait(lambda: len(b.all("table tbody tr")) == 2, "two attempts")
        cells = b.all("table tbody tr")[0].text
        check("500" in cells and "failed" in cells, f"an attempt row shows its status: {cells}")
        check("receiver says no" in b.d.page_source, "the response body is on the page")
        b.shot("delivery.png")
        b.click("#retry-delivery")
        b.wait(lambda: "Retry queued" in b.text("#retry-result"), "Retry queued")
        d = s.ok("GET", f"/api/v1/deliveries/{target}")
        check(d["state"] == "pending" or len(d["attempts"]) >= 3, f"the API has the retry: {d}")
        b.wait(lambda: b.text("#delivery-attempts") in ("2", "3"), "the attempt count")
        self.s.wait_no_pending(fail)
        check(len(s.ok("GET", f"/api/v1/deliveries/{target}")["attempts"]) >= 3, "the retry made an attempt")
        b.check_logs("delivery page")

    def replay(self):
        b, s = self.b, self.s
        fail = self.ids["fail"]
        before = {d["id"]: d["attempts"] for d in s.ok("GET", f"/api/v1/deliveries?endpointId={fail}&status=failed&limit=1000")["data"]}
        check(len(before) == 6, f"6 failed before the replay: {before}")
        b.go(f"#/webhooks/{fail}", "webhooks/:id")
        b.set_value("Failed since", (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
        b.click("#replay")
        b.wait(lambda: b.text("#replay-result") == "Replayed 6 failed deliveries.", "Replayed 6")
        self.s.wait_no_pending(fail)
        after = {d["id"]: d["attempts"] for d in s.ok("GET", f"/api/v1/deliveries?endpointId={fail}&limit=1000")["data"]}
        check(all(after[i] > before[i] for i in before), f"every failed delivery got another attempt: {before} → {after}")
        b.wait(lambda: len(b.all("table tbody tr")) >= 6, "recent deliveries on the endpoint page")
        b.check_logs("replay")

    def triggers(self):
        b, s, r = self.b, self.s, self.r
        b.go("#/triggers", "triggers")
        b.one(".empty")
        # Add one: type by its seed name, name, description, enabled.
        b.click("#add-trigger")
        dlg = b.dialog()
        options = [o.text for o in Select(b.input("Trigger Type", dlg)).options]
        check(len(options) == 20 and options[0] == "Appointment created" and "Message failed" in options,
              f"the 20 seed trigger types: {options}")
        b.choose("Trigger Type", "Participant confirmed", root=dlg)
        b.type("Name", "Confirmations", dlg)
        b.type("Description", "Tell the CRM", dlg)
        check(b.input("Enabled", dlg).is_selected(), "enabled by default")
        b.click(b.button("Add trigger", dlg))
        b.no_dialog()
        b.on_page("triggers/:id")
        tid = int(b.d.current_url.rsplit("/", 1)[1])
        t = s.ok("GET", f"/api/v1/triggers/{tid}")
        check(t["type"] == "participant_confirmed" and t["name"] == "Confirmations" and t["enabled"] and
              t["description"] == "Tell the CRM", f"the API holds the trigger: {t}")
        # Edit: rename and disable.
        b.click("#edit-trigger")
        dlg = b.dialog()
        b.type("Name", "Confirmed participants", dlg)
        b.click(b.input("Enabled", dlg))
        b.click(b.button("Save trigger", dlg))
        b.no_dialog()
        b.wait(lambda: b.text("#trigger-name") == "Confirmed participants" and "disabled" in b.text("#trigger-status"), "the edit shown")
        t = s.ok("GET", f"/api/v1/triggers/{tid}")
        check(t["name"] == "Confirmed participants" and t["enabled"] is False, f"the API holds the edit: {t}")
        b.click("#edit-trigger")
        dlg = b.dialog()
        b.click(b.input("Enabled", dlg))
        b.click(b.button("Save trigger", dlg))
        b.no_dialog()
        b.wait(lambda: "enabled" in b.text("#trigger-status"), "enabled again")
        check(s.ok("GET", f"/api/v1/triggers/{tid}")["enabled"] is True, "enabled in the API")
        # Actions.
        for name, path in (("notify ok", "/ok/action"), ("notify fail", "/fail/action")):
            check(Select(b.input("Webhook Action Type")).first_selected_option.text == "Send webhook notification",
                  "the action type")
            b.type("Webhook URL", r.url(path))
            b.type("Name", name)
            b.click("#add-action")
            b.wait(lambda: name in [e.text for e in b.all(".action-name")], f"the action {name}")
        acts = s.ok("GET", f"/api/v1/triggers/{tid}/actions")["data"]
        check([a["name"] for a in acts] == ["notify ok", "notify fail"] and all(a["type"] == "webhook" for a in acts),
              f"the API holds both actions: {acts}")
        a_ok, a_fail = acts[0]["id"], acts[1]["id"]
        self.ids["trigger"], self.ids["action"] = tid, a_ok
        # Toggle one off and on.
        sw = b.one(f"input[data-toggle='{a_fail}']")
        b.click(sw)
        b.wait(lambda: s.ok("GET", f"/api/v1/triggers/{tid}/actions/{a_fail}")["enabled"] is False, "the action disabled in the API")
        b.wait(lambda: not b.one(f"input[data-toggle='{a_fail}']").is_selected(), "the switch off")
        b.click(b.one(f"input[data-toggle='{a_fail}']"))
        b.wait(lambda: s.ok("GET", f"/api/v1/triggers/{tid}/actions/{a_fail}")["enabled"] is True, "enabled again in the API")
        b.shot("trigger.png")
        # Fire the trigger: both actions run.
        s.ok("POST", "/api/v1/events", {"type": "participant_confirmed", "occurredAt": iso(datetime.now(timezone.utc)),
                                         "participant": {"id": 7, "event_id": 70, "name": "Ann Lead", "phone": PHONE_A,
                                                         "event": {"id": 70, "title": "Demo call"}}})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = s.ok("GET", f"/api/v1/triggers/{tid}/actions/{a_fail}/log")["data"]
            if runs and runs[0]["state"] == "failed":
                break
            time.sleep(0.3)
        check(runs and runs[0]["state"] == "failed", f"the failing action's run failed: {runs}")
        # Its log, filtered.
        b.click(b.one(f"a[data-log='{a_fail}']"))
        b.on_page("triggers/:id/actions/:aid")
        b.wait(lambda: len(b.all("tr.run-row")) == 1, "one run")
        b.choose("Outcome", "Succeeded")
        b.wait(lambda: "status=succeeded" in b.d.current_url and b.all(".empty") and b.all(".empty")[0].is_displayed(), "no succeeded runs")
        b.choose("Outcome", "Failed")
        b.wait(lambda: "status=failed" in b.d.current_url and len(b.all("tr.run-row")) == 1, "the failed run")
        row = b.all("tr.run-row")[0]
        check("failed" in row.text and "HTTP 500" in row.text, f"the run's row: {row.text}")
        b.click(b.one("button[data-run]"))
        detail = b.one("tr.detail-row")
        check("apptoto_id" in detail.text and "Ann Lead" in detail.text and runs[0]["apptotoId"] in detail.text,
              f"the run's payload: {detail.text}")
        check("500" in detail.text and "receiver says no" in detail.text, f"the run's response: {detail.text}")
        b.shot("action-log.png")
        b.go(f"#/triggers/{tid}/actions/{a_ok}", "triggers/:id/actions/:aid")
        b.wait(lambda: len(b.all("tr.run-row")) == 1 and "succeeded" in b.all("tr.run-row")[0].text, "the ok run succeeded")
        b.check_logs("action log")
        # Delete an action.
        b.go(f"#/triggers/{tid}", "triggers/:id")
        b.click(b.one(f"button[data-delete='{a_fail}']"))
        b.click(b.button("Delete action", b.dialog()))
        b.no_dialog()
        b.wait(lambda: [e.text for e in b.all(".action-name")] == ["notify ok"], "one action left")
        check(s.call("GET", f"/api/v1/triggers/{tid}/actions/{a_fail}").status == 404, "the deleted action is 404")
        # A second trigger, edited and deleted from the list.
        b.go("#/triggers", "triggers")
        b.click("#add-trigger")
        dlg = b.dialog()
        b.choose("Trigger Type", "Message failed", root=dlg)
        b.type("Name", "Temporary", dlg)
        b.click(b.button("Add trigger", dlg))
        b.no_dialog()
        b.on_page("triggers/:id")
        t2 = int(b.d.current_url.rsplit("/", 1)[1])
        b.go("#/triggers", "triggers")
        b.wait(lambda: len(b.all(".trigger-name")) == 2, "two triggers")
        b.click(b.one(f"button[data-edit='{t2}']"))
        dlg = b.dialog()
        b.choose("Trigger Type", "Message received", root=dlg)
        b.click(b.button("Save trigger", dlg))
        b.no_dialog()
        b.wait(lambda: "Message received" in b.d.find_element(By.CSS_SELECTOR, "table tbody").text, "the new type in the list")
        check(s.ok("GET", f"/api/v1/triggers/{t2}")["type"] == "message_received", "the API has the new type")
        b.shot("triggers.png")
        b.click(b.one(f"button[data-delete='{t2}']"))
        b.click(b.button("Delete trigger", b.dialog()))
        b.no_dialog()
        b.wait(lambda: len(b.all(".trigger-name")) == 1, "one trigger left")
        check(s.call("GET", f"/api/v1/triggers/{t2}").status == 404, "the deleted trigger is 404")
        # Load more: 50 more triggers through the API.
        extra = [s.ok("POST", "/api/v1/triggers", {"type": "message_sent", "name": f"bulk {i}"})["id"] for i in range(50)]
        b.go("#/overview", "overview")
        b.go("#/triggers", "triggers")
        b.wait(lambda: len(b.all(".trigger-name")) == 50, "a page of 50 triggers")
        b.click(b.button("Load more"))
        b.wait(lambda: len(b.all(".trigger-name")) == 51, "51 after Load more")
        check(b.all(".trigger-name")[-1].text == "Confirmed participants", "the oldest last")
        for i in extra:
            s.ok("DELETE", f"/api/v1/triggers/{i}")
        b.check_logs("triggers")

    def campaigns(self):
        b, s, r = self.b, self.s, self.r
        b.go("#/campaigns", "campaigns")
        b.click("#new-campaign")
        dlg = b.dialog()
        b.type("Name", "Mastery launch", dlg)
        b.type("Delivery URL", r.url("/ok/campaign"), dlg)
        b.click(b.button("Create campaign", dlg))
        b.no_dialog()
        b.on_page("campaigns/:id")
        cid = int(b.d.current_url.rsplit("/", 1)[1])
        self.ids["campaign"] = cid
        c = s.ok("GET", f"/api/v1/campaigns/{cid}")
        check(c["name"] == "Mastery launch" and c["state"] == "draft" and c["deliveryUrl"] == r.url("/ok/campaign"), f"the campaign: {c}")

        # Audience: a CSV with two bad rows and a duplicate.
        rows = [["phone", "external_id", "first_name"], [PHONE_A, "lead-a", "Ann"], [PHONE_B, "lead-b", "Bo"],
                [PHONE_C, "lead-c", "Cy"], ["12", "lead-x", "X"], [PHONE_A, "lead-a2", "Ann"], ["not a phone", "lead-y", "Y"]]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        path = os.path.join(self.s.dir, "audience.csv")
        with open(path, "w") as f:
            f.write(buf.getvalue())
        b.input("Audience CSV file").send_keys(path)
        b.click("#upload-audience")
        b.wait(lambda: b.all("#upload-counts"), "the upload's counts")
        counts = {e.get_attribute("data-count"): e.text for e in b.all("#upload-counts [data-count]")}
        check(counts == {"received": "6", "accepted": "3", "duplicates": "1", "rejected": "2"}, f"the counts: {counts}")
        rejects = [tr.text for tr in b.all("#upload-result tbody tr")]
        check(len(rejects) == 2 and "invalid phoneE164" in rejects[0] and rejects[0].startswith("4"), f"the rejects: {rejects}")
        prog = b.one("#upload-progress")
        check(prog.get_attribute("value") == prog.get_attribute("max"), "the progress bar is full")
        b.wait(lambda: b.text("#audience-size") == "3 leads", "audience size 3")
        check(s.ok("GET", f"/api/v1/campaigns/{cid}")["audienceSize"] == 3, "the API's audience is 3")

        # Opt-outs: C out; B out and back in.
        b.type("Phones", f"{PHONE_C}\n{PHONE_B}")
        b.click("#opt-out-add")
        b.wait(lambda: b.text("#opt-out-result").startswith("2 newly opted out"), "2 opted out")
        b.type("Phones", PHONE_B)
        b.click("#opt-out-remove")
        b.wait(lambda: b.text("#opt-out-result").startswith("1 opt-outs removed"), "1 removed")
        check(s.ok("GET", f"/api/v1/opt-outs?phone={urllib.parse.quote(PHONE_C)}")["optedOut"] is True, "C opted out in the API")
        check(s.ok("GET", f"/api/v1/opt-outs?phone={urllib.parse.quote(PHONE_B)}")["optedOut"] is False, "B not opted out in the API")
        b.type("Check a phone", PHONE_C)
        b.click("#opt-out-check")
        b.wait(lambda: "opted out" in b.text("#opt-out-status") and "not" not in b.text("#opt-out-status"), "C shown opted out")
        b.type("Phones", "not-a-phone")
        b.click("#opt-out-add")
        b.wait(lambda: b.input("Phones").get_attribute("aria-invalid") == "true", "the 400 under Phones")

        # A send: local time + zone, event filter (exclude mastery_purchase within 2 days).
        tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
        b.set_value("Local time", f"{tomorrow}T09:00")
        b.type("Time zone", "America/New_York")
        b.type("Template name", "launch_1")
        b.type("Language", "en_US")
        b.click(b.input("Event filter"))
        b.choose("Mode", "Exclude leads that have the event")
        b.type("Event type", "mastery_purchase")
        b.type("Within the last (minutes)", "2880")
        b.click("#create-send")
        b.one("#send-panel .card")
        sends = s.ok("GET", f"/api/v1/campaigns/{cid}/sends")
        check(len(sends) == 1, f"one send: {sends}")
        x = sends[0]
        check(x["localTime"] == f"{tomorrow}T09:00" and x["timeZone"] == "America/New_York" and
              x["eventFilter"] == {"mode": "exclude", "eventType": "mastery_purchase", "within": {"minutes": 2880}}
              and x["templateName"] == "launch_1", f"the send: {x}")
        sid = x["id"]
        # Eligibility: 3 in, 1 opted out, 0 by audience filter, 1 by the event filter, 1 eligible.
        b.click("#run-eligibility")
        b.wait(lambda: b.all("#eligibility [data-step]"), "the eligibility steps")
        steps = {e.get_attribute("data-step"): e.text for e in b.all("#eligibility [data-step]")}
        check(steps == {"audience": "3", "optedOut": "− 1", "audienceFilter": "− 0", "eventFilter": "− 1", "eligible": "1"},
              f"the steps: {steps}")
        api = s.call("POST", f"/api/v1/campaigns/{cid}/sends/{sid}/eligible")
        lines = [json.loads(l) for l in api.text.splitlines() if l.strip()]
        check(lines[-1]["summary"] == {"audience": 3, "optedOut": 1, "audienceFilter": 0, "eventFilter": 1, "eligible": 1}
              and lines[0]["phoneE164"] == PHONE_B, f"the API's eligibility: {lines}")
        check(PHONE_B in b.text("#eligibility"), "the eligible lead is listed")
        # Materialize: one pending delivery (due at the send's instant), shown as progress.
        b.click("#materialize-send")
        b.wait(lambda: b.all("#send-progress [data-count=emitted]") and b.text("#send-progress [data-count=emitted]") == "1", "1 emitted")
        legend = b.text("#send-progress .legend")
        check("pending 1" in legend and "delivered 0" in legend, f"the progress legend: {legend}")
        api = s.ok("GET", f"/api/v1/campaigns/{cid}/sends/{sid}")
        check(api["emitted"] == 1 and api["pending"] == 1, f"the API's progress: {api}")
        b.check_logs("campaign page")
        b.shot("campaign.png")

        # A pending delivery cannot be retried: the 409 is shown.
        pending = s.ok("GET", "/api/v1/deliveries?eventType=campaign_send&status=pending")["data"]
        check(len(pending) == 1, f"one pending campaign_send: {pending}")
        b.go(f"#/deliveries/{pending[0]['id']}", "deliveries/:id")
        b.one("#delivery-payload")
        b.click("#retry-delivery")
        b.wait(lambda: b.one("#retry-error").text.strip(), "the 409 shown next to Retry")
        check(s.call("POST", f"/api/v1/deliveries/{pending[0]['id']}/retry").status == 409, "the API answers 409")

        # A second campaign on an existing endpoint: schedule, pause, resume, a 409, cancel.
        b.go("#/campaigns", "campaigns")
        b.click("#new-campaign")
        dlg = b.dialog()
        b.type("Name", "Webinar follow-up", dlg)
        b.click(b.input("An existing endpoint", dlg))
        b.wait(lambda: len(Select(b.input("Endpoint", dlg)).options) >= 2, "the endpoints to load")
        b.choose("Endpoint", value=str(self.ids["ok"]), root=dlg)
        b.click(b.button("Create campaign", dlg))
        b.no_dialog()
        b.on_page("campaigns/:id")
        c2 = int(b.d.current_url.rsplit("/", 1)[1])
        check(s.ok("GET", f"/api/v1/campaigns/{c2}")["endpointId"] == self.ids["ok"], "the campaign delivers to the endpoint")
        s.ok("POST", f"/api/v1/campaigns/{c2}/sends", {"scheduledFor": iso(datetime.now(timezone.utc) + timedelta(days=2)),
                                                         "templateName": "follow_up", "language": "en_US"})
        b.go("#/campaigns", "campaigns")

        def state_in_list(c):
            return b.one(f".campaign-state[data-campaign='{c}']").text
        b.wait(lambda: state_in_list(c2) == "draft", "draft in the list")
        b.click(b.one(f"button[data-transition=schedule][data-campaign='{c2}']"))
        b.wait(lambda: state_in_list(c2) == "scheduled", "scheduled in the list")
        check(s.ok("GET", f"/api/v1/campaigns/{c2}")["state"] == "scheduled", "scheduled in the API")
        b.click(b.one(f"button[data-transition=pause][data-campaign='{c2}']"))
        b.wait(lambda: state_in_list(c2) == "paused", "paused in the list")
        check(s.ok("GET", f"/api/v1/campaigns/{c2}")["state"] == "paused", "paused in the API")
        b.shot("campaigns.png")
        b.go(f"#/campaigns/{c2}", "campaigns/:id")
        b.click(b.one("#campaign-actions button[data-transition=resume]"))
        b.wait(lambda: b.text("#campaign-state") == "scheduled", "resumed")
        check(s.ok("GET", f"/api/v1/campaigns/{c2}")["state"] == "scheduled", "scheduled again in the API")
        # Someone else pauses it: the page's Pause then answers 409, shown.
        s.ok("POST", f"/api/v1/campaigns/{c2}/pause")
        b.click(b.one("#campaign-actions button[data-transition=pause]"))
        b.wait(lambda: "cannot pause" in b.one("#transition-error").text, "the 409 shown")
        b.go("#/campaigns", "campaigns")
        b.go(f"#/campaigns/{c2}", "campaigns/:id")
        b.click(b.one("#campaign-actions button[data-transition=cancel]"))
        b.click(b.button("Cancel campaign", b.dialog()))
        b.no_dialog()
        b.wait(lambda: b.text("#campaign-state") == "cancelled", "cancelled")
        check(s.ok("GET", f"/api/v1/campaigns/{c2}")["state"] == "cancelled", "cancelled in the API")
        check(not b.all("#campaign-actions button"), "no transition left after cancel")
        # Load more: sends (20 a page) and campaigns (50 a page).
        for i in range(20):
            s.ok("POST", f"/api/v1/campaigns/{cid}/sends", {"scheduledFor": iso(datetime.now(timezone.utc) + timedelta(days=3, minutes=i)),
                                                             "templateName": f"t{i}", "language": "en_US"})
        b.go(f"#/campaigns/{cid}", "campaigns/:id")
        b.wait(lambda: len(b.all("button[data-eligible]")) == 20, "a page of 20 sends")
        b.click(b.xp("//section[.//h2[text()='Sends']]//button[text()='Load more']"))
        b.wait(lambda: len(b.all("button[data-eligible]")) == 21, "21 sends after Load more")
        check(len(s.ok("GET", f"/api/v1/campaigns/{cid}/sends")) == 21, "the API has 21 sends")
        for i in range(49):
            s.ok("POST", "/api/v1/campaigns", {"name": f"bulk {i}", "endpointId": self.ids["ok"]})
        b.go("#/campaigns", "campaigns")
        b.wait(lambda: len(b.all(".campaign-name")) == 50, "a page of 50 campaigns")
        b.click(b.button("Load more"))
        b.wait(lambda: len(b.all(".campaign-name")) == 51, "51 campaigns after Load more")
        check(b.all(".campaign-name")[-1].text == "Mastery launch", "the oldest last")
        b.check_logs("campaigns")

    # ---------- WhatsApp: integrations (Settings) and conversations (Contacts)

    def integrations_in_ui(self):
        """The integration ids the Settings list shows, in its order."""
        return [int(e.text) for e in self.b.all("#whatsapp-integrations .integration-id")]

    def integrations_in_api(self):
        return [i["botIntegrationId"] for i in self.s.ok("GET", "/api/v1/integrations/whatsapp")["data"]]

    def wa_post(self, biid, phone_digits, profile, messages, key="admin"):
        """A WhatsApp Cloud API webhook as Meta sends it (tests/it/whatsapp.rs message()), the key as Bearer."""
        body = {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1234"},
                      "contacts": [{"profile": {"name": profile}, "wa_id": phone_digits}],
                      "messages": [dict({"from": phone_digits}, **m) for m in messages]}}]}]}
        return self.s.call("POST", f"/api/v1/integrations/whatsapp/{biid}/webhook", body, key=key)

    def settings(self):
        b, s, r = self.b, self.s, self.r
        b.go("#/settings", "settings")
        b.one("#settings-form")
        b.type("Webhook URL", "ftp://nope")
        b.click("#save-settings")
        b.wait(lambda: b.input("Webhook URL").get_attribute("aria-invalid") == "true", "the 400 under Webhook URL")
        check(s.ok("GET", "/api/v1/organizations/current/settings")["webhookUrl"] is None, "nothing stored")
        b.type("Webhook URL", r.url("/ok/settings"))
        b.click("#save-settings")
        b.wait(lambda: b.text("#settings-saved").startswith("Saved"), "Saved")
        api = s.ok("GET", "/api/v1/organizations/current/settings")
        check(api["webhookUrl"] == r.url("/ok/settings"), f"the API holds the URL: {api}")
        check(not b.all("#settings-secret-value"), "the secret is hidden until Reveal")
        b.click("#reveal-settings-secret")
        check(b.text("#settings-secret-value") == api["webhookSigningSecret"], "the revealed secret is the API's")
        settings_ep = [e for e in s.ok("GET", "/api/webhooks/get") if e["kind"] == "settings"]
        check(len(settings_ep) == 1, "the settings endpoint is listed")
        self.ids["settings"] = settings_ep[0]["id"]

        # WhatsApp: the list is the API's (empty at first), registering adds to it.
        b.wait(lambda: "No WhatsApp integrations yet" in b.text("#whatsapp-integrations .empty"), "the empty list")
        check(self.integrations_in_api() == [], "the API lists no integration yet")
        b.type("Bot integration id", "456")
        b.type("Bot id (optional)", "123")
        b.type("App secret", "app-secret-1")
        b.type("Verify token", "verify-me")
        b.click("#register-whatsapp")
        cb = b.wait(lambda: b.text("#whatsapp-callback"), "the callback URL")
        check(cb == f"{s.base}/api/v1/integrations/whatsapp/456/webhook", f"the callback URL: {cb}")
        b.wait(lambda: self.integrations_in_ui() == [456], "456 in the list")
        api = s.ok("GET", "/api/v1/integrations/whatsapp")["data"]
        check([(i["botIntegrationId"], i["botId"], i["hasAppSecret"], i["hasVerifyToken"], i["webhookPath"]) for i in api]
              == [(456, 123, True, True, "/api/v1/integrations/whatsapp/456/webhook")], f"the API lists 456: {api}")
        check(not any("app-secret-1" in json.dumps(i) for i in api), "the API never answers the secret")
        check(b.d.execute_script("return sessionStorage.getItem('leadstream.whatsapp.42')") is None,
              "the list is not kept in sessionStorage")
        # A second one, a verify token but no app secret: newest first, as the API lists them.
        b.type("Bot integration id", "457")
        b.type("Bot id (optional)", "")
        b.type("App secret", "")
        b.type("Verify token", "token-457")
        b.click("#register-whatsapp")
        b.wait(lambda: "/whatsapp/457/webhook" in b.text("#whatsapp-callback"), "457's callback URL")
        b.wait(lambda: self.integrations_in_ui() == [457, 456], "457 and 456 in the list")
        check(self.integrations_in_api() == [457, 456], f"the API lists them newest first: {self.integrations_in_api()}")
        row = {i: b.xp(f"//table//tr[.//span[@data-integration='{i}']]") for i in (456, 457)}
        for i, (secret, token) in ((456, ("true", "true")), (457, ("false", "true"))):
            flags = {p.get_attribute("data-flag"): p.get_attribute("data-present") for p in b.all("[data-flag]", row[i])}
            check(flags == {"appSecret": secret, "verifyToken": token}, f"{i}'s flags on the page: {flags}")
            url = b.one(".integration-callback", row[i]).text
            check(url == f"{s.base}/api/v1/integrations/whatsapp/{i}/webhook", f"{i}'s callback URL in the list: {url}")
        check(b.all("[data-flag='appSecret']", row[457])[0].text == "not set", "457 has no app secret, in words")
        bots = [b.one(".integration-bot", row[i]).text for i in (456, 457)]
        check(bots == ["bot 123", "no bot id"], f"the bot ids: {bots}")
        fit = b.d.execute_script("const w = document.querySelector('#whatsapp-integrations .table-wrap'); return [w.scrollWidth, w.clientWidth]")
        check(fit[0] <= fit[1], f"the integrations table fits 1280 px: {fit}")
        b.shot("settings.png")
        # Copy the callback URL from the list.
        copy = [x for x in b.all("button", row[456]) if x.text == "Copy"][0]
        b.click(copy)
        b.wait(lambda: copy.text == "Copied", "Copied")
        clip = b.clipboard()
        check(clip in (None, f"{s.base}/api/v1/integrations/whatsapp/456/webhook"), f"the clipboard holds {clip!r}")
        # The same id again: the 409 is shown, the list unchanged.
        b.type("Bot integration id", "456")
        b.click("#register-whatsapp")
        again = s.call("POST", "/api/v1/integrations/whatsapp", {"botIntegrationId": 456})
        check(again.status == 409 and again.json and again.json.get("error"), f"the API answers 409: {again}")
        b.wait(lambda: [e for e in b.all("#whatsapp-form .error") if e.is_displayed() and again.json["error"] in e.text], "the 409 shown")
        check(self.integrations_in_ui() == [457, 456] and self.integrations_in_api() == [457, 456], "nothing added")
        hs = s.call("GET", "/api/v1/integrations/whatsapp/456/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=c42", key=None)
        check(hs.status == 200 and hs.text == "c42", f"Meta's handshake works: {hs}")
        b.check_logs("settings")

    def contacts(self):
        b, s = self.b, self.s
        # A real conversation: two messages from PHONE_A on integration 456, then a bot reply.
        now = int(time.time())
        t1, t2 = now - 180, now - 120
        for mid, at, text in (("wamid.walk1", t1, "Hi, is the webinar still on?"), ("wamid.walk2", t2, "Can I reschedule?")):
            got = self.wa_post(456, PHONE_A[1:], "Kerry Fisher", [{"id": mid, "timestamp": str(at), "type": "text", "text": {"body": text}}])
            check(got.status == 200 and got.json == {"status": "accepted", "messages": 1, "statuses": 0},
                  f"the WhatsApp webhook took {mid}: {got}")
        s.ok("POST", "/api/v1/events", {"type": "message_sent", "occurredAt": iso(datetime.fromtimestamp(now - 60, timezone.utc)),
                                         "botIntegrationId": 456,
                                         "message": {"id": 9001, "participant": {"phone": PHONE_A}, "content": "Sure: pick a time here."}})
        want = [("user", "Hi, is the webinar still on?", t1), ("user", "Can I reschedule?", t2), ("bot", "Sure: pick a time here.", now - 60)]
        deadline = time.monotonic() + 15
        while True:
            convs = s.ok("GET", f"/api/v1/contacts/{urllib.parse.quote(PHONE_A)}/conversations")["data"]
            got = [(m["sender"], m["content"], m["at"]) for m in convs[0]["messages"]] if convs else []
            if got == [(w, c, iso(datetime.fromtimestamp(t, timezone.utc))) for w, c, t in want] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        check(len(convs) == 1, f"one conversation for {PHONE_A}: {convs}")
        conv = convs[0]
        check(got == [(w, c, iso(datetime.fromtimestamp(t, timezone.utc))) for w, c, t in want], f"the API's messages: {conv['messages']}")
        check(conv["botIntegrationId"] == 456 and conv["phoneE164"] == PHONE_A and conv["profileName"] == "Kerry Fisher"
              and "replied" in conv["tags"] and conv["lastUserMessageAt"] == iso(datetime.fromtimestamp(t2, timezone.utc))
              and conv["inactiveAt"] == iso(datetime.fromtimestamp(t2, timezone.utc) + timedelta(hours=23)),
              f"the API's conversation: {conv}")

        b.go("#/contacts", "contacts")
        b.type("Phone (E.164)", PHONE_A)
        b.click("#contact-search")
        b.on_page("contacts/:phone")
        b.wait(lambda: b.all("#contact-phone") and b.text("#contact-phone") == PHONE_A, "the contact")
        check(b.text("#contact-name") == "Ann Lead", "the contact's name (a profile name does not replace it)")
        card = b.one("#conversations .conversation[data-integration='456']")
        check(len(b.all("#conversations .conversation")) == 1, "one conversation card")
        check("456" in b.one("h3", card).text, "the card names the integration")
        check(b.one(".conv-profile", card).text == "Kerry Fisher", f"the profile name: {b.one('.conv-profile', card).text}")
        tags = [p.text for p in b.all("[data-tag]", card)]
        check(tags == conv["tags"], f"the tags on the page {tags} are the API's {conv['tags']}")
        timer = b.one(".conv-timer", card)
        check(timer.text.startswith("Inactive at ") and b.one("time", timer).get_attribute("datetime") == conv["inactiveAt"],
              f"the inactivity timer: {timer.text}")
        msgs = b.all(".transcript li.msg", card)
        shown = [(m.get_attribute("data-sender"), b.one(".text", m).get_attribute("textContent"),
                  m.find_element(By.CSS_SELECTOR, "time").get_attribute("datetime")) for m in msgs]
        check(shown == [(m["sender"], m["content"], m["at"]) for m in conv["messages"]], f"the transcript, oldest first: {shown}")
        check("Kerry Fisher" in msgs[0].get_attribute("textContent") and "Bot" in msgs[2].get_attribute("textContent"), "who wrote each")
        looks = b.d.execute_script(
            "const [u, , bot] = arguments[0]; const box = u.parentElement.getBoundingClientRect();"
            "const ru = u.getBoundingClientRect(), rb = bot.getBoundingClientRect();"
            "return [getComputedStyle(u).backgroundColor !== getComputedStyle(bot).backgroundColor,"
            "        ru.left - box.left < 20, box.right - rb.right < 20, rb.left - box.left > 20];", msgs)
        check(all(looks), f"user messages on the left, bot messages on the right in another color: {looks}")
        check(not b.all(".show-more", card), "no Show more for 3 messages")
        b.wait(lambda: len(b.all(".event-type")) == 50, "a page of 50 events")
        b.click(b.button("Load more"))
        b.wait(lambda: len(b.all(".event-type")) == 62, "all 62 events")
        api = []
        cursor = None
        while True:
            q = f"/api/v1/lead-events?phone={urllib.parse.quote(PHONE_A)}&limit=50" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            page = s.ok("GET", q)
            api += page["data"]
            cursor = page["nextCursor"]
            if not cursor:
                break
        check([e.text for e in b.all(".event-type")] == [e["eventType"] for e in api], "the events are the API's, in its order")
        b.type("Event type", "mastery_purchase")
        b.click(b.button("Filter"))
        b.wait(lambda: "eventType=mastery_purchase" in b.d.current_url and [e.text for e in b.all(".event-type")] == ["mastery_purchase"], "one mastery_purchase")
        check("ord_9F2" in b.d.find_element(By.CSS_SELECTOR, "table tbody").text, "its metadata")
        b.one("#conversations .conversation .transcript li.msg")
        b.shot("contacts.png")

        # No conversation: the empty state, as the API's empty list.
        b.go(f"#/contacts/{urllib.parse.quote(PHONE_B, safe='')}", "contacts/:phone")
        b.one("#no-contact")
        check(s.call("GET", f"/api/v1/contacts/{urllib.parse.quote(PHONE_B)}").status == 404, "B has no contact in the API")
        b.wait(lambda: [e.text for e in b.all(".event-type")] == ["webinar_attended"], "B's event")
        check(b.text("#no-conversations") == "No WhatsApp conversations with this contact.", "the empty state")
        check(s.ok("GET", f"/api/v1/contacts/{urllib.parse.quote(PHONE_B)}/conversations") == {"data": []}, "the API's empty list")

        # Show more: 52 messages (one webhook), the newest 50 first, then all; media links.
        base = now - 3600
        many = [{"id": f"wamid.many{i}", "timestamp": str(base + i), "type": "text", "text": {"body": f"message {i}"}} for i in range(50)]
        many.append({"id": "wamid.many-img", "timestamp": str(base + 50), "type": "image",
                     "image": {"caption": "the venue", "link": "https://media.example.com/venue.jpg"}})
        many.append({"id": "wamid.many-doc", "timestamp": str(base + 51), "type": "document",
                     "document": {"caption": "a script", "link": "javascript:alert(1)"}})
        got = self.wa_post(456, PHONE_D[1:], "Dana Many", many)
        check(got.status == 200 and got.json["messages"] == 52, f"52 messages taken: {got}")
        full = s.ok("GET", f"/api/v1/contacts/{urllib.parse.quote(PHONE_D)}/conversations?messages=500")["data"][0]["messages"]
        check(len(full) == 52 and full[0]["content"] == "message 0", f"the API keeps 52: {len(full)}")
        b.go(f"#/contacts/{urllib.parse.quote(PHONE_D, safe='')}", "contacts/:phone")
        card = b.one("#conversations .conversation[data-integration='456']")
        b.wait(lambda: len(b.all(".transcript li.msg", card)) == 50, "the newest 50 messages")
        def contents():
            return [m.get_attribute("textContent") for m in b.all(".transcript li.msg .text", b.one("#conversations .conversation"))]
        check(contents() == [m["content"] for m in full[2:]], "the newest 50, oldest first")
        b.click(b.one(".show-more", card))
        b.wait(lambda: len(contents()) == 52, "all 52 after Show more")
        check(contents() == [m["content"] for m in full], "the 52 are the API's, oldest first")
        check(not b.all("#conversations .show-more"), "no Show more once all are shown")
        links = [a.get_attribute("href") for a in b.all("#conversations a.media-link")]
        check(links == ["https://media.example.com/venue.jpg"], f"only the http(s) media link is a link: {links}")
        check("javascript:alert(1)" in b.one("#conversations").get_attribute("textContent"), "the other is shown as text")
        # The webhook deliveries these messages caused (incoming_message) settle before the overview counts.
        self.s.wait_no_pending(self.ids["fail"])
        self.s.wait_no_pending(self.ids["settings"])
        b.check_logs("contacts")

    def whatsapp_delete(self):
        b, s = self.b, self.s
        b.go("#/settings", "settings")
        b.wait(lambda: self.integrations_in_ui() == [457, 456], "both integrations listed")
        hs = s.call("GET", "/api/v1/integrations/whatsapp/457/webhook?hub.mode=subscribe&hub.verify_token=token-457&hub.challenge=c7", key=None)
        check(hs.status == 200 and hs.text == "c7", f"457's handshake works: {hs}")
        # Cancel changes nothing.
        b.click(b.one("button[data-delete-integration='457']"))
        dlg = b.dialog()
        check("Delete WhatsApp integration 457?" in dlg.text, f"the dialog names it: {dlg.text}")
        b.click(b.button("Cancel", dlg))
        b.no_dialog()
        check(self.integrations_in_api() == [457, 456], "Cancel deletes nothing")
        # Delete it.
        b.click(b.one("button[data-delete-integration='457']"))
        b.click(b.button("Delete integration", b.dialog()))
        b.no_dialog()
        b.wait(lambda: self.integrations_in_ui() == [456], "457 gone from the list")
        check(self.integrations_in_api() == [456], f"457 gone from the API: {self.integrations_in_api()}")
        hs = s.call("GET", "/api/v1/integrations/whatsapp/457/webhook?hub.mode=subscribe&hub.verify_token=token-457&hub.challenge=c7", key=None)
        check(hs.status == 403, f"the deleted integration's handshake is 403: {hs}")
        got = self.wa_post(457, PHONE_A[1:], "Kerry Fisher", [{"id": "wamid.after", "timestamp": str(int(time.time())), "type": "text", "text": {"body": "late"}}])
        check(got.status == 401, f"the deleted integration's webhook answers 401: {got}")
        # One deleted elsewhere meanwhile: the 404 in the dialog, then the list is the API's again.
        s.ok("POST", "/api/v1/integrations/whatsapp", {"botIntegrationId": 459})
        b.go("#/overview", "overview")
        b.go("#/settings", "settings")
        b.wait(lambda: self.integrations_in_ui() == [459, 456], "459 listed")
        s.ok("DELETE", "/api/v1/integrations/whatsapp/459")
        b.click(b.one("button[data-delete-integration='459']"))
        dlg = b.dialog()
        b.click(b.button("Delete integration", dlg))
        b.wait(lambda: any(e.is_displayed() and e.text for e in b.all(".error", dlg)), "the 404 in the dialog")
        b.click(b.button("Cancel", dlg))
        b.no_dialog()
        b.wait(lambda: self.integrations_in_ui() == [456], "the list re-read")
        b.check_logs("whatsapp delete")

    def overview(self):
        b, s = self.b, self.s
        b.go("#/overview", "overview")
        b.wait(lambda: b.all("[data-chart='chart-lead-events'] .chart-total"), "the charts")
        since = iso(datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1))
        api = s.ok("GET", f"/api/v1/stats?since={urllib.parse.quote(since)}")
        check(api["totals"]["leadEvents"] == 63, f"the API counts 63 lead events: {api['totals']}")
        def total(c):
            return b.one(f"[data-chart='{c}'] .chart-total").get_attribute("data-total")
        check(total("chart-lead-events") == "63", f"lead events total {total('chart-lead-events')}")
        check(total("chart-succeeded") == str(api["totals"]["deliveriesSucceeded"]), "succeeded total")
        check(total("chart-failed") == str(api["totals"]["deliveriesFailed"]), "failed total")
        check(int(api["totals"]["deliveriesFailed"]) >= 6, f"failed deliveries counted: {api['totals']}")
        bars = len(b.all("[data-chart='chart-lead-events'] svg rect"))
        busy = len([m for m in api["minutes"] if m["leadEvents"]])
        check(bars == busy and bars >= 1, f"the lead chart has {bars} bars, the API {busy} minutes with events")
        check(len(api["minutes"]) in (60, 61), f"one entry per minute: {len(api['minutes'])}")
        check(b.text("#stat-pending") == str(api["pendingDeliveries"]), f"pending {b.text('#stat-pending')} vs {api['pendingDeliveries']}")
        failing = [e["id"] for e in api["failingEndpoints"]]
        check(self.ids["fail"] in failing, f"the failing endpoint is listed by the API: {failing}")
        b.one(f"main a[href='#/webhooks/{self.ids['fail']}']")
        s.ok("POST", "/api/v1/webhooks/lead-events", {"organizationId": ORG, "eventType": "late", "events": [
            {"phoneE164": PHONE_B, "occurredAt": iso(datetime.now(timezone.utc))}]})
        b.click("#overview-refresh")
        b.wait(lambda: total("chart-lead-events") == "64", "the refresh to count the new event")
        # The widest window the server allows (24 h) works, then back to the last hour.
        b.choose("Window", "Last 24 hours")
        b.wait(lambda: int(b.one("[data-chart='chart-lead-events']").get_attribute("data-points")) >= 1440 or b.page_errors(),
               "the 24 h window's 1440 minutes")
        check(not b.page_errors(), f"the 24 h window: {b.page_errors()}")
        check(total("chart-lead-events") == "64", "the 24 h window counts the same events")
        b.choose("Window", "Last hour")
        b.wait(lambda: int(b.one("[data-chart='chart-lead-events']").get_attribute("data-points")) <= 61, "the last hour again")
        check(total("chart-lead-events") == "64" and not b.page_errors(), "the last hour again")
        b.shot("overview.png")
        b.check_logs("overview")

    def narrow(self):
        b = self.b
        b.viewport(390, 844)
        try:
            for page, name in (("overview", "overview-390.png"), ("webhooks", "webhooks-390.png")):
                b.go("#/overview" if page == "webhooks" else "#/webhooks", "overview" if page == "webhooks" else "webhooks")
                b.go(f"#/{page}", page)
                if page == "overview":
                    b.wait(lambda: b.all("[data-chart] .chart-total"), "the charts")
                else:
                    b.wait(lambda: b.all(".webhook-url"), "the webhooks")
                b.one("nav.nav")
                over = b.d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
                check(over <= 0, f"{page} at 390 px overflows the page by {over}px")
                wide = b.d.execute_script(
                    "return [...document.querySelectorAll('.table-wrap')].every(w => getComputedStyle(w).overflowX === 'auto')")
                check(wide, "tables scroll inside their container")
                nav = b.one("nav.nav").rect
                check(nav["width"] <= 390, f"the navigation fits: {nav}")
                b.shot(name)
            # Every other page fits 390 px too (tables scroll inside their box).
            for hash_, page, ready in ((f"#/webhooks/{self.ids['ok']}", "webhooks/:id", "#endpoint-form"),
                                       ("#/deliveries", "deliveries", ".delivery-id"),
                                       (f"#/deliveries/{self.ids['delivery']}", "deliveries/:id", "#delivery-payload"),
                                       ("#/triggers", "triggers", ".trigger-name"),
                                       (f"#/triggers/{self.ids['trigger']}", "triggers/:id", ".action-name"),
                                       (f"#/triggers/{self.ids['trigger']}/actions/{self.ids['action']}", "triggers/:id/actions/:aid", "tr.run-row"),
                                       ("#/campaigns", "campaigns", ".campaign-name"),
                                       (f"#/campaigns/{self.ids['campaign']}", "campaigns/:id", "button[data-eligible]"),
                                       (f"#/contacts/{urllib.parse.quote(PHONE_A, safe='')}", "contacts/:phone", ".event-type"),
                                       (f"#/contacts/{urllib.parse.quote(PHONE_D, safe='')}", "contacts/:phone", ".show-more"),
                                       ("#/settings", "settings", "#settings-form")):
                b.go(hash_, page)
                b.one(ready)
                if page == "contacts/:phone":
                    b.one("#conversations .transcript li.msg")
                    if ready == ".event-type":
                        b.shot("contacts-390.png")
                if page == "settings":
                    b.wait(lambda: self.integrations_in_ui() == [456], "the integration listed")
                    b.shot("settings-390.png")
                over = b.d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
                check(over <= 0, f"{hash_} at 390 px overflows the page by {over}px")
        finally:
            b.viewport(1280, 900)
        b.check_logs("390 px")

    def read_key(self):
        b, s = self.b, self.s
        self.signout()
        self.signin("read")
        b.go("#/webhooks", "webhooks")
        b.wait(lambda: b.all(".webhook-url"), "the list for a read key")
        check("Read-only" in b.text(".notice.read-only"), "a read-only notice")
        new = b.one("#new-webhook")
        check(not new.is_enabled() and "admin" in new.get_attribute("title"), "New Webhook is disabled with a reason")
        deletes = b.all("button[data-delete]")
        check(deletes and all(not x.is_enabled() for x in deletes), "Delete buttons are disabled")
        # Forced on anyway, the API's 403 is shown where the action was tried.
        b.d.execute_script("const x = document.getElementById('new-webhook'); x.disabled = false;")
        b.click("#new-webhook")
        dlg = b.dialog()
        b.type("Endpoint URL", self.r.url("/ok/by-reader"), dlg)
        b.click(b.button("Create Webhook", dlg))
        b.wait(lambda: any("scope is read" in e.text for e in b.all(".error", dlg) if e.is_displayed()), "the 403 in the dialog")
        b.click(b.button("Cancel", dlg))
        b.no_dialog()
        check(not [e for e in s.ok("GET", "/api/webhooks/get") if "by-reader" in e["webhook"]], "nothing was created")
        for method, path, body in (("POST", "/api/webhooks/create", {"webhook": "https://x.example.com"}),
                                   ("POST", "/api/v1/triggers", {"type": "message_sent", "name": "x"}),
                                   ("POST", f"/api/v1/campaigns/{self.ids['campaign']}/schedule", None),
                                   ("PUT", "/api/v1/organizations/current/settings", {"webhookUrl": None}),
                                   ("POST", "/api/v1/webhooks/lead-events", {"organizationId": ORG, "eventType": "x", "events": [{"phoneE164": PHONE_A, "occurredAt": iso(datetime.now(timezone.utc))}]})):
            got = s.call(method, path, body, key="read").status
            check(got == 403, f"{method} {path} with the read key answered {got}, not 403")
        b.go(f"#/webhooks/{self.ids['ok']}", "webhooks/:id")
        reveal = b.one("#reveal-secret")
        check(not reveal.is_enabled() and reveal.get_attribute("title"), "Reveal secret is disabled with a reason")
        check(not b.one("#save-endpoint").is_enabled() and not b.one("#rotate-secret").is_enabled(), "Save and Rotate are disabled")
        check(s.call("GET", f"/api/webhooks/{self.ids['ok']}/secret", key="read").status == 403, "the API refuses a read key the secret")
        check(s.call("GET", "/api/v1/organizations/current/settings", key="read").status == 403, "and the settings")
        b.go("#/settings", "settings")
        b.wait(lambda: b.all("#settings-url") and b.text("#settings-url") == self.r.url("/ok/settings"), "the settings URL from the registry")
        check("admin key" in b.text("main .notice"), "the page says secrets need an admin key")
        check(not b.one("#register-whatsapp").is_enabled(), "Register is disabled")
        b.wait(lambda: self.integrations_in_ui() == [456], "the integrations listed for a read key")
        check(s.call("GET", "/api/v1/integrations/whatsapp", key="read").status == 200, "the API lists them for a read key")
        check(not b.one("button[data-delete-integration='456']").is_enabled(), "Delete integration is disabled")
        b.go("#/triggers", "triggers")
        b.wait(lambda: b.all(".trigger-name"), "the triggers")
        check(not b.one("#add-trigger").is_enabled(), "Add is disabled")
        b.go(f"#/campaigns/{self.ids['campaign']}", "campaigns/:id")
        buttons = b.wait(lambda: b.all("#campaign-actions button"), "the transition buttons")
        check(all(not x.is_enabled() for x in buttons), "transitions are disabled")
        check(not b.one("#upload-audience").is_enabled() and not b.one("#create-send").is_enabled(), "upload and Add send are disabled")
        b.go("#/deliveries", "deliveries")
        b.wait(lambda: b.all(".delivery-id"), "deliveries for a read key")
        b.click(b.all(".delivery-id")[0])
        b.on_page("deliveries/:id")
        check(not b.one("#retry-delivery").is_enabled(), "Retry is disabled")
        b.check_logs("read key")

    def ingest_key(self):
        b, s = self.b, self.s
        self.signout()
        self.signin("ingest")
        b.wait(lambda: "can only ingest" in b.d.find_element(By.CSS_SELECTOR, "main").text, "the ingest notice")
        check(s.call("GET", "/api/v1/stats", key="ingest").status == 403, "the API refuses the ingest key")
        got = s.call("POST", "/api/v1/webhooks/lead-events", {"organizationId": ORG, "eventType": "ingested", "events": [
            {"phoneE164": PHONE_B, "occurredAt": iso(datetime.now(timezone.utc))}]}, key="ingest")
        check(got.status == 200, f"the ingest key may send lead events: {got}")
        got = s.call("POST", "/api/v1/events", {"type": "booking_page_viewed", "occurredAt": iso(datetime.now(timezone.utc)),
                                                 "booking_page": {"id": 1, "name": "Demo", "url": "https://book.example.com/demo"}}, key="ingest")
        check(got.status == 202, f"the ingest key may send domain events: {got}")
        b.click(b.xp("//nav[@class='nav']//a[text()='Webhooks']"))
        b.wait(lambda: "can only ingest" in b.d.find_element(By.CSS_SELECTOR, "main").text, "the notice on every page")
        b.check_logs("ingest key")
        self.signout()

    def revoked_key(self):
        """A key revoked while signed in: the next call's 401 signs the tab out, saying why."""
        b, s = self.b, self.s
        s.keys["extra"] = s.cli("api-key", "create", "--org", str(ORG), "--scope", "admin")[-1].strip()
        key_id = s.ok("GET", "/api/v1/api-keys/current", key="extra")["keyId"]
        self.signin("extra", expect="admin")
        b.go("#/webhooks", "webhooks")
        s.cli("api-key", "revoke", "--org", str(ORG), "--id", str(key_id))
        b.d.execute_script("location.hash = '#/triggers'")
        b.one("input[name=key]")
        b.wait(lambda: any("no longer accepts" in t for t in b.page_errors()), "the sign-in page saying why")
        check(b.d.execute_script("return sessionStorage.getItem('leadstream.apiKey')") is None, "the revoked key is forgotten")
        b.check_logs("revoked key")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/debug/leadstream", help="the leadstream binary")
    ap.add_argument("--screenshots", default="console-screenshots", help="where the PNGs go")
    ap.add_argument("--skip", default="", help="development only: comma-separated steps to leave out (the run then exits 2)")
    args = ap.parse_args()
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    binary = os.path.abspath(args.bin)
    check(os.access(binary, os.X_OK), f"no executable at {binary}")
    os.makedirs(args.screenshots, exist_ok=True)

    receiver = Receiver()
    server = Server(binary)
    browser = None
    step = "start"
    try:
        step = "static checks"
        static_checks()
        server.start()
        log(f"server at {server.base}, data dir {server.dir}, receiver on {receiver.port}")
        browser = Browser(server.base, args.screenshots)
        walk = Walk(server, receiver, browser)
        walk.seed_lead_events()
        steps = [
            ("sign in", lambda: walk.signin("admin", first=True)),
            ("navigation", walk.navigation),
            ("webhooks", walk.webhooks),
            ("webhook", walk.webhook),
            ("deliveries", walk.deliveries),
            ("replay", walk.replay),
            ("triggers", walk.triggers),
            ("campaigns", walk.campaigns),
            ("settings", walk.settings),
            ("contacts", walk.contacts),
            ("whatsapp delete", walk.whatsapp_delete),
            ("overview", walk.overview),
            ("390 px", walk.narrow),
            ("read key", walk.read_key),
            ("ingest key", walk.ingest_key),
            ("revoked key", walk.revoked_key),
        ]
        for step, fn in steps:
            if step in skip:
                log(f"step: {step} SKIPPED")
                continue
            log(f"step: {step}")
            fn()
        if skip:
            log(f"steps skipped ({', '.join(sorted(skip))}): not a pass")
            return 2
        missing = [n for n in ("overview.png", "webhooks.png", "webhook.png", "deliveries.png", "delivery.png",
                               "triggers.png", "trigger.png", "action-log.png", "campaigns.png", "campaign.png",
                               "contacts.png", "settings.png", "signin.png", "overview-390.png", "webhooks-390.png")
                   if not os.path.exists(os.path.join(args.screenshots, n))]
        check(not missing, f"screenshots missing: {missing}")
        log(f"PASS: every page and action, screenshots in {args.screenshots}")
        return 0
    except Exception as e:  # report, keep a picture of the failure
        log(f"FAIL in step '{step}': {e}")
        traceback.print_exc()
        if browser:
            try:
                browser.d.save_screenshot(os.path.join(args.screenshots, f"FAILED-{step.replace(' ', '-')}.png"))
                print("url:", browser.d.current_url)
                for entry in browser.d.get_log("browser"):
                    print("browser log:", entry)
            except Exception:
                pass
        if server.dir:
            try:
                with open(os.path.join(server.dir, "serve.log")) as f:
                    tail = f.read()[-3000:]
                print("server log tail:\n" + tail)
            except OSError:
                pass
        return 1
    finally:
        if browser:
            browser.quit()
        server.close()
        receiver.stop()


if __name__ == "__main__":
    sys.exit(main())
