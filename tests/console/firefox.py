#!/usr/bin/env python3
"""Checks the leadstream web console in headless Firefox (ESR) against a real server.

    python3 tests/console/firefox.py --bin target/debug/leadstream --screenshots DIR

walk.py is the full walk, in Chromium; this is the same console in Gecko: every page
renders, one real action works, a read key sees disabled buttons, and nothing logs a
JavaScript error or a CSP violation. It reuses walk.py's Server, Receiver and helpers
(imported, not copied) and drives Firefox over Marionette directly, without geckodriver:

  firefox-esr --headless --marionette --no-remote -remote-allow-system-access --profile <temp dir>

with a user.js that stops Firefox's background networking and has Marionette listen on a
free port (marionette.port 0: Firefox picks one and writes it to <profile>/MarionetteActivePort),
with marionette_driver (tests/console/requirements.txt). FIREFOX=... names another binary.

Errors are read three ways, because Marionette has no "run this script before the page's
scripts" (Chromium's Page.addScriptToEvaluateOnNewDocument; WebDriver BiDi's
script.addPreloadScript is not a Marionette command):
  - a console-service listener registered in the browser (chrome) process before the first
    page loads: content processes forward every script error and CSP report to it, so it
    sees what happens while the page's modules load (-remote-allow-system-access lets
    Marionette run that chrome-context script);
  - walk.py's securitypolicyviolation listener plus error / unhandledrejection listeners and
    a console.error hook, installed in the page once it has loaded (the console is one
    document: hash navigation keeps them);
  - Firefox's stdout (browser.dom.window.dump.enabled): its "JavaScript error: <this
    origin>..." lines.
The page is loaded with CSS error reporting on (as with Firefox's web console open), so a
declaration or rule Gecko drops from console.css fails the check too, but for the ones in
CSS_DROPS_ALLOWED.

Saves firefox-<page>.png of every page to --screenshots; exits non-zero on any failure,
with FAILED-firefox-<step>.png. Firefox and the server are always stopped at the end.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # no __pycache__ left in tests/console
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from walk import CSP_LISTENER, ORG, PHONE_A, Failure, Receiver, Server, check, iso, log  # noqa: E402

from marionette_driver import errors  # noqa: E402
from marionette_driver.by import By  # noqa: E402
from marionette_driver.keys import Keys  # noqa: E402
from marionette_driver.marionette import Marionette  # noqa: E402

FIREFOX = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")

# Quiet, offline, automation-friendly Firefox. (Firefox's own "recommended automation
# preferences", remote.prefs.recommended, are applied on top by Marionette.)
PREFS = {
    "marionette.port": 0,  # Firefox picks a free port and writes it to <profile>/MarionetteActivePort
    # script errors (and the page's console.*) on stdout
    "browser.dom.window.dump.enabled": True,
    "devtools.console.stdout.content": True,
    "devtools.console.stdout.chrome": False,
    # no background networking (there is no internet here, and CI should not call home)
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.system.topstories": False,
    "browser.newtabpage.activity-stream.feeds.snippets": False,
    "browser.newtabpage.activity-stream.showSponsoredTopSites": False,
    "browser.topsites.contile.enabled": False,
    "browser.discovery.enabled": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.search.update": False,
    "browser.ping-centre.telemetry": False,
    "browser.translations.enable": False,
    "browser.ml.enable": False,
    "browser.uitour.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.dataSubmissionPolicyBypassNotification": True,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.healthreport.service.enabled": False,
    "datareporting.usage.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "extensions.update.enabled": False,
    "extensions.update.autoUpdateDefault": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.formautofill.addresses.enabled": False,
    "extensions.formautofill.creditCards.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "nimbus.rollouts.enabled": False,
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "security.remote_settings.intermediates.enabled": False,
    "security.certerrors.mitm.priming.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.predictor.enabled": False,
    "network.manage-offline-status": False,
    "dom.push.connection.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "geo.provider.network.url": "",
    "identity.fxaccounts.enabled": False,
    "signon.rememberSignons": False,
    "idle.lastDailyNotification": -1,
    "privacy.trackingprotection.enabled": False,
    # headless focus behaves as in a focused window (the Escape/focus check needs it)
    "focusmanager.testmode": True,
}

# Declarations Firefox is known to drop, harmlessly: what else it drops fails the check.
CSS_DROPS_ALLOWED = (
    # html { -webkit-text-size-adjust: 100% } stops mobile Safari / Chrome for Android
    # inflating text; Gecko's alias takes only auto | none, and desktop Firefox inflates nothing.
    "‘-webkit-text-size-adjust’",
)

# In the browser process: keep every script error and CSP report any content process sends.
CHROME_LISTENER = """
if (!window.__lsConsole) {
  const seen = [];
  const listener = { observe(msg) {
    if (msg instanceof Ci.nsIScriptError) {
      seen.push({ flags: msg.flags, category: msg.category || '', message: msg.errorMessage || '',
                  source: msg.sourceName || '', line: msg.lineNumber, column: msg.columnNumber });
    }
  } };
  Services.console.registerListener(listener);
  window.__lsConsole = { seen, listener };
}
return true;
"""

CHROME_TAKE = """
const c = window.__lsConsole;
return c ? c.seen.splice(0) : null;
"""

# In the page: walk.py's CSP listener, and what window.onerror, unhandledrejection and
# console.error see. Once per document.
PAGE_COLLECTOR = """
if (!window.__lsErrors) {
  window.__lsErrors = [];
  const push = (x) => window.__lsErrors.push(String(x));
""" + CSP_LISTENER + """
  window.addEventListener('error', function (e) {
    if (e.target && e.target !== window) {
      push('failed to load ' + (e.target.src || e.target.href || e.target.tagName));
    } else {
      push('uncaught ' + e.message + ' at ' + e.filename + ':' + e.lineno + ':' + e.colno);
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    const r = e.reason;
    push('unhandled rejection: ' + (r && (r.stack || r.message) || r));
  });
  const original = console.error;
  console.error = function (...args) {
    push('console.error: ' + args.map(String).join(' '));
    return original.apply(this, args);
  };
}
return true;
"""

PAGE_TAKE = """
if (!window.__lsErrors) return null;
const out = window.__lsErrors.splice(0).concat(window.__csp.splice(0).map((v) => 'CSP violation: ' + v));
return out;
"""


class Firefox:
    """Headless Firefox on a fresh profile, driven over Marionette."""

    def __init__(self, base, shots):
        self.base = base
        self.shots = shots
        self.profile = tempfile.mkdtemp(prefix="leadstream-firefox-")
        with open(os.path.join(self.profile, "user.js"), "w") as f:
            for k, v in PREFS.items():
                f.write(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n")
        self.stdout_path = os.path.join(self.profile, "firefox.log")
        self.stdout = open(self.stdout_path, "wb")
        self.stdout_offset = 0
        self.warnings = []
        env = dict(os.environ, MOZ_CRASHREPORTER_DISABLE="1", MOZ_HEADLESS="1")
        self.proc = subprocess.Popen(
            [FIREFOX, "--headless", "--marionette", "--no-remote", "-remote-allow-system-access",
             "--profile", self.profile, "about:blank"],
            stdout=self.stdout, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.m = None
        try:
            port_file = os.path.join(self.profile, "MarionetteActivePort")
            port = self.poll(lambda: os.path.exists(port_file) and open(port_file).read().strip(),
                             "Firefox to write MarionetteActivePort", timeout=60, browser=False)
            self.m = Marionette(host="127.0.0.1", port=int(port))
            self.m.start_session()
            log(f"Firefox {self.m.session_capabilities.get('browserVersion')} on Marionette port {port}")
            self.m.timeout.script = 20
            self.m.timeout.implicit = 0
            with self.m.using_context(self.m.CONTEXT_CHROME):
                self.m.execute_script(CHROME_LISTENER)
            self.m.set_window_rect(width=1280, height=900)
        except BaseException:
            self.quit()
            raise

    def quit(self):
        if self.m is not None:
            try:
                self.m.delete_session()
            except Exception:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        # The content processes are in Firefox's process group: none outlives it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.stdout.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- waiting and finding

    def poll(self, fn, message, timeout=15, browser=True):
        """fn() until truthy (then its value), every 0.1 s; a Failure after timeout."""
        deadline = time.monotonic() + timeout
        next_look = time.monotonic() + 1
        while True:
            try:
                v = fn()
                if v:
                    return v
            except (errors.StaleElementException, errors.NoSuchElementException, errors.JavascriptException,
                    errors.ElementNotInteractableException):
                pass
            if not browser and self.proc.poll() is not None:
                raise Failure(f"Firefox exited with {self.proc.returncode}; see {self.stdout_path}")
            if browser and time.monotonic() > next_look:
                # A script error often means what we wait for never comes: say so at once.
                problems = self.problems()
                check(not problems, f"Firefox problems while waiting for {message}:\n  " + "\n  ".join(problems))
                next_look = time.monotonic() + 1
            if time.monotonic() > deadline:
                extra = ""
                if browser:
                    try:
                        extra = f"; page errors shown: {self.page_errors()}; browser problems: {self.problems()}"
                    except Exception:
                        pass
                raise Failure(f"timed out after {timeout}s waiting for: {message}{extra}")
            time.sleep(0.1)

    def all(self, css, root=None):
        return (root or self.m).find_elements(By.CSS_SELECTOR, css)

    def one(self, css, root=None, timeout=15):
        return self.poll(lambda: next((e for e in self.all(css, root) if e.is_displayed()), None), f"a visible {css}", timeout)

    def xp(self, xpath, timeout=15):
        return self.poll(lambda: next((e for e in self.m.find_elements(By.XPATH, xpath) if e.is_displayed()), None),
                         f"a visible {xpath}", timeout)

    def button(self, text, root=None):
        return self.poll(lambda: next((b for b in self.all("button, a.btn", root) if b.is_displayed() and b.text.strip() == text), None),
                         f'a button "{text}"')

    def nav(self, label):
        return self.xp(f"//nav[@class='nav']//a[normalize-space(text())='{label}']")

    def click(self, el):
        if isinstance(el, str):
            el = self.one(el)
        self.poll(lambda: el.is_enabled(), "the control to be enabled")
        el.click()
        return el

    def input(self, label, root=None):
        """The control a <label> names (its text, or the first line of it)."""
        def find():
            for lab in self.all("label", root):
                if not lab.is_displayed():
                    continue
                text = lab.text.strip()
                if text == label or text.split("\n")[0].strip() == label:
                    fid = lab.get_attribute("for")
                    if fid:
                        return self.m.find_element(By.ID, fid)
                    inner = lab.find_elements(By.CSS_SELECTOR, "input, select, textarea")
                    if inner:
                        return inner[0]
            return None
        return self.poll(find, f'a field labelled "{label}"')

    def type(self, label, text, root=None):
        el = self.input(label, root)
        el.clear()
        if text:
            el.send_keys(text)
        return el

    def dialog(self):
        return self.one("dialog[open]")

    def no_dialog(self):
        self.poll(lambda: not self.all("dialog[open]"), "the dialog to close")

    def on_page(self, page):
        self.poll(lambda: self.m.execute_script(
            "const p = document.querySelector('.page'); return !!p && p.dataset.page === arguments[0]", script_args=[page]),
            f"the {page} page")

    def heading(self, want):
        """The page's <h1> is `want` (a string, or a predicate)."""
        ok = want if callable(want) else (lambda t: t == want)
        return self.poll(lambda: (lambda t: t if ok(t) else None)(self.one("main h1").text.strip()), f"the heading {want!r}")

    def text(self, css):
        return self.one(css).text.strip()

    def page_errors(self):
        return [e.text for e in self.all(".error") if e.is_displayed() and e.text.strip()]

    def shot(self, name):
        """A PNG of the whole page, from the top."""
        self.m.execute_script("window.scrollTo(0, 0); const t = document.getElementById('toasts'); if (t) t.replaceChildren();")
        png = self.m.screenshot(full=True, format="binary")
        with open(os.path.join(self.shots, f"firefox-{name}.png"), "wb") as f:
            f.write(png)

    def clipboard(self):
        """The clipboard's text, read in the browser process (None if that fails)."""
        try:
            with self.m.using_context(self.m.CONTEXT_CHROME):
                return self.m.execute_script("""
                  const t = Cc['@mozilla.org/widget/transferable;1'].createInstance(Ci.nsITransferable);
                  t.init(null);
                  t.addDataFlavor('text/plain');
                  Services.clipboard.getData(t, Ci.nsIClipboard.kGlobalClipboard, window.browsingContext.currentWindowContext);
                  const out = {};
                  t.getTransferData('text/plain', out);
                  return out.value.QueryInterface(Ci.nsISupportsString).data;
                """)
        except errors.MarionetteException as e:
            log(f"(could not read the clipboard: {str(e).splitlines()[0]})")
            return None

    # -- errors

    def open(self, url):
        """Load url with CSS error reporting on (as when Firefox's web console is open), so
        that a declaration Firefox drops is reported; then listen in the page."""
        self.m.navigate(url)
        self.one("#app > *")
        # The flag is the document's docshell's: set it, then load again.
        self.m.execute_script("window.docShell.cssErrorReportingEnabled = true;", sandbox="system")
        self.m.refresh()
        check(self.m.execute_script("return window.docShell.cssErrorReportingEnabled", sandbox="system"),
              "CSS error reporting is on")
        self.one("#app > *:not(#boot)")
        self.install_collector()

    def install_collector(self):
        """Once the document has loaded (again after any full load)."""
        self.m.execute_script(PAGE_COLLECTOR, sandbox=None)

    def problems(self):
        out = []
        # 1. The browser process's console listener: every script error and CSP report.
        with self.m.using_context(self.m.CONTEXT_CHROME):
            seen = self.m.execute_script(CHROME_TAKE) or []
        for e in seen:
            if os.environ.get("FIREFOX_CONSOLE_DEBUG"):
                log(f"console service: {e}")
            ours = e["source"].startswith(self.base) or self.base in e["message"]
            csp = e["category"].startswith("CSP") or e["message"].startswith("Content-Security-Policy")
            warning = e["flags"] & (1 | 8)  # nsIScriptError.warningFlag | infoFlag
            where = f"{e['source']}:{e['line']}:{e['column']}" if e["source"] else "?"
            if csp:
                out.append(f"CSP [{e['category']}] {e['message']} ({where})")
            elif ours and not warning:
                out.append(f"error [{e['category']}] {e['message']} ({where})")
            elif ours and e["category"] == "CSS Parser" and not any(a in e["message"] for a in CSS_DROPS_ALLOWED):
                out.append(f"CSS Firefox drops [{e['category']}] {e['message']} ({where})")
            elif ours:
                self.warnings.append(f"[{e['category']}] {e['message']} ({where})")
        # 2. The page's own listeners.
        taken = self.m.execute_script(PAGE_TAKE, sandbox=None)
        if taken is None:
            self.install_collector()  # a new document: listen from now on (1. saw its load)
        else:
            out += [f"page: {x}" for x in taken]
        # 3. Firefox's stdout.
        self.stdout.flush()
        with open(self.stdout_path, "rb") as f:
            f.seek(self.stdout_offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        self.stdout_offset += cut
        for line in chunk[:cut].decode("utf-8", "replace").splitlines():
            # (Not its "console.error:" lines: Firefox's own modules print some too, alike;
            # the page's console.error is hooked in 2.)
            if line.startswith(f"JavaScript error: {self.base}"):
                out.append(f"stdout: {line}")
        return out

    def check_logs(self, where):
        problems = self.problems()
        check(not problems, f"Firefox problems after {where}:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- the check


class Check:
    def __init__(self, server, receiver, browser):
        self.s = server
        self.r = receiver
        self.b = browser
        self.ids = {}

    def seed(self):
        s, r = self.s, self.r
        now = datetime.now(timezone.utc)
        events = [("page_view", 9, {"page": "/pricing"}), ("trial_started", 6, None), ("mastery_purchase", 3, {"orderId": "ord_FF1"})]
        for event_type, minutes, meta in events:
            ev = {"phoneE164": PHONE_A, "occurredAt": iso(now - timedelta(minutes=minutes))}
            if meta:
                ev["metadata"] = meta
            got = s.ok("POST", "/api/v1/webhooks/lead-events", {"organizationId": ORG, "eventType": event_type, "events": [ev]})
            check(got["inserted"] == 1, f"seeding {event_type}: {got}")
        s.ok("PUT", f"/api/v1/contacts/{urllib.parse.quote(PHONE_A)}",
             {"email": "ann@example.com", "fullName": "Ann Lead", "firstName": "Ann", "lastName": "Lead"})
        self.ids["endpoint"] = s.ok("POST", "/api/webhooks/create", {"webhook": r.url("/ok/seed")})["data"]["id"]
        s.publish("lead_test", 1)
        s.wait_no_pending(self.ids["endpoint"])
        deliveries = s.ok("GET", f"/api/v1/deliveries?endpointId={self.ids['endpoint']}")["data"]
        check(len(deliveries) == 1 and deliveries[0]["state"] == "succeeded", f"one succeeded delivery: {deliveries}")
        self.ids["delivery"] = deliveries[0]["id"]
        self.ids["trigger"] = s.ok("POST", "/api/v1/triggers", {"type": "participant_confirmed", "name": "Confirmations"})["id"]
        self.ids["action"] = s.ok("POST", f"/api/v1/triggers/{self.ids['trigger']}/actions",
                                  {"type": "webhook", "url": r.url("/ok/action"), "name": "notify crm"})["id"]
        s.ok("POST", "/api/v1/events", {"type": "participant_confirmed", "occurredAt": iso(now),
                                         "participant": {"id": 7, "event_id": 70, "name": "Ann Lead", "phone": PHONE_A,
                                                         "event": {"id": 70, "title": "Demo call"}}})
        log_path = f"/api/v1/triggers/{self.ids['trigger']}/actions/{self.ids['action']}/log"
        deadline = time.monotonic() + 20
        while not [x for x in s.ok("GET", log_path)["data"] if x["state"] == "succeeded"]:
            check(time.monotonic() < deadline, f"the action's run never succeeded: {s.ok('GET', log_path)}")
            time.sleep(0.2)
        self.ids["campaign"] = s.ok("POST", "/api/v1/campaigns", {"name": "Spring launch", "endpointId": self.ids["endpoint"]})["id"]

    def signin(self, scope, first=False):
        b = self.b
        if first:
            b.open(self.s.base + "/")
        b.one("input[name=key]")
        if first:
            b.heading("Sign in to the console")
            b.shot("signin")
        b.type("API key", self.s.keys[scope])
        b.click(b.button("Sign in"))
        b.one("#sign-out")
        b.poll(lambda: b.text("#key-scope") == scope, f"the header to show scope {scope}")
        check(b.text("#org-id") == str(ORG), f"the header shows org {b.text('#org-id')}, not {ORG}")
        b.on_page("overview")

    def signout(self):
        b = self.b
        b.click("#sign-out")
        b.one("input[name=key]")

    def rows(self, css):
        return [e.text.strip() for e in self.b.all(css)]

    def pages(self):
        b, s, r, ids = self.b, self.s, self.r, self.ids
        labels = [a.text.strip() for a in b.all("nav.nav a")]
        check(labels == ["Overview", "Webhooks", "Deliveries", "Triggers", "Campaigns", "Contacts", "Settings"],
              f"navigation labels: {labels}")

        # Overview (through its link, from another page).
        b.click(b.nav("Settings"))
        b.on_page("settings")
        b.click(b.nav("Overview"))
        b.on_page("overview")
        b.heading("Overview")
        b.poll(lambda: b.all("[data-chart='chart-lead-events'] .chart-total"), "the charts")
        total = b.one("[data-chart='chart-lead-events'] .chart-total").get_attribute("data-total")
        check(total == "3", f"the overview counts {total} lead events, not the 3 seeded")
        check(b.all("[data-chart='chart-lead-events'] svg rect"), "the lead chart has bars")
        b.shot("overview")
        b.check_logs("overview")

        # Webhooks, then the seeded endpoint.
        b.click(b.nav("Webhooks"))
        b.on_page("webhooks")
        b.heading("Webhooks")
        api = [e["webhook"] for e in s.ok("GET", "/api/webhooks/get")]
        b.poll(lambda: self.rows(".webhook-url") == api, f"the webhook rows {api}")
        check(r.url("/ok/seed") in api, f"the seeded endpoint is listed: {api}")
        current = [a.text for a in b.all("nav.nav a[aria-current=page]")]
        check(current == ["Webhooks"], f"aria-current marks {current}")
        # Copy (navigator.clipboard in Firefox): the button says so, the clipboard holds the URL.
        row = b.xp(f"//tr[.//span[text()='{r.url('/ok/seed')}']]")
        copy = next(x for x in b.all("button", row) if x.text == "Copy")
        b.click(copy)
        b.poll(lambda: copy.text == "Copied", 'the Copy button to say "Copied"')
        clip = b.clipboard()
        check(clip in (None, r.url("/ok/seed")), f"the clipboard holds {clip!r}")
        b.shot("webhooks")
        b.check_logs("webhooks")
        b.click(b.xp(f"//a[@class='webhook-id' and text()='{ids['endpoint']}']"))
        b.on_page("webhooks/:id")
        b.heading(f"Webhook {ids['endpoint']}")
        b.poll(lambda: b.text("#endpoint-url") == r.url("/ok/seed"), "the endpoint's URL")
        b.one("#endpoint-form")
        b.shot("webhook")
        b.check_logs("webhook page")

        # Deliveries, then the delivery.
        b.click(b.nav("Deliveries"))
        b.on_page("deliveries")
        b.heading("Deliveries")
        b.poll(lambda: ids["delivery"] in self.rows(".delivery-id"), "the seeded delivery's row")
        b.shot("deliveries")
        b.check_logs("deliveries")
        b.click(b.xp(f"//a[contains(@class,'delivery-id') and text()='{ids['delivery']}']"))
        b.on_page("deliveries/:id")
        b.heading(f"Delivery {ids['delivery']}")
        payload = b.poll(lambda: b.text("#delivery-payload"), "the payload")
        check(json.loads(payload).get("contactName") == "Ana", f"the payload: {payload}")
        b.poll(lambda: "succeeded" in b.text("#delivery-state"), "the succeeded state")
        b.poll(lambda: len(b.all("table tbody tr")) >= 1, "the attempt rows")
        b.shot("delivery")
        b.check_logs("delivery page")

        # Triggers, the trigger, its action's log.
        b.click(b.nav("Triggers"))
        b.on_page("triggers")
        b.heading("Triggers")
        b.poll(lambda: self.rows(".trigger-name") == ["Confirmations"], "the seeded trigger's row")
        b.shot("triggers")
        b.check_logs("triggers")
        b.click(b.xp("//a[@class='trigger-name' and text()='Confirmations']"))
        b.on_page("triggers/:id")
        b.heading("Trigger: Confirmations")
        b.poll(lambda: b.text("#trigger-name") == "Confirmations", "the trigger's name")
        b.poll(lambda: self.rows(".action-name") == ["notify crm"], "the action's row")
        b.shot("trigger")
        b.check_logs("trigger page")
        b.click(b.one(f"a[data-log='{ids['action']}']"))
        b.on_page("triggers/:id/actions/:aid")
        b.heading('Log of action "notify crm"')
        b.poll(lambda: len(b.all("tr.run-row")) == 1 and "succeeded" in b.all("tr.run-row")[0].text, "the succeeded run")
        b.shot("action-log")
        b.check_logs("action log")

        # Campaigns, then the campaign.
        b.click(b.nav("Campaigns"))
        b.on_page("campaigns")
        b.heading("Campaigns")
        b.poll(lambda: self.rows(".campaign-name") == ["Spring launch"], "the seeded campaign's row")
        b.shot("campaigns")
        b.check_logs("campaigns")
        b.click(b.xp("//a[@class='campaign-name' and text()='Spring launch']"))
        b.on_page("campaigns/:id")
        b.heading("Campaign: Spring launch")
        b.poll(lambda: b.text("#campaign-state") == "draft", "the draft state")
        check(b.all("#campaign-actions button"), "the campaign's transition buttons")
        b.shot("campaign")
        b.check_logs("campaign page")

        # Contacts: search the phone.
        b.click(b.nav("Contacts"))
        b.on_page("contacts")
        b.heading("Contacts")
        b.shot("contacts")
        b.type("Phone (E.164)", PHONE_A)
        b.click("#contact-search")
        b.on_page("contacts/:phone")
        b.heading(f"Contact {PHONE_A}")
        b.poll(lambda: b.all("#contact-phone") and b.text("#contact-phone") == PHONE_A, "the contact record")
        check(b.text("#contact-name") == "Ann Lead", "the contact's name")
        api = [e["eventType"] for e in s.ok("GET", f"/api/v1/lead-events?phone={urllib.parse.quote(PHONE_A)}")["data"]]
        check(sorted(api) == ["mastery_purchase", "page_view", "trial_started"], f"the API's events: {api}")
        b.poll(lambda: self.rows(".event-type") == api, f"the lead event rows {api}")
        b.shot("contact")
        b.check_logs("contact page")

        # Settings.
        b.click(b.nav("Settings"))
        b.on_page("settings")
        b.heading("Settings")
        b.one("#settings-form")
        b.poll(lambda: b.all("#whatsapp-integrations .empty"), "the (empty) WhatsApp integrations")
        b.shot("settings")
        b.check_logs("settings")

    def new_webhook(self):
        b, s, r = self.b, self.s, self.r
        b.click(b.nav("Webhooks"))
        b.on_page("webhooks")
        b.poll(lambda: "Active Webhooks: " in b.text("#active-webhooks") and "…" not in b.text("#active-webhooks"), "the counter")
        # Escape closes the dialog; focus goes back to its opener.
        b.click("#new-webhook")
        b.dialog()
        field = b.input("Endpoint URL")
        b.poll(lambda: b.m.execute_script("return document.activeElement === arguments[0]", script_args=[field]),
               "focus in the dialog's first field")
        field.send_keys(Keys.ESCAPE)
        b.no_dialog()
        b.poll(lambda: b.m.execute_script("return document.activeElement && document.activeElement.id") == "new-webhook",
               "focus back on New Webhook")
        # Create one for real.
        url = r.url("/ok/from-firefox")
        b.click("#new-webhook")
        dlg = b.dialog()
        b.type("Endpoint URL", url, dlg)
        b.shot("new-webhook")
        b.click(b.button("Create Webhook", dlg))
        b.no_dialog()
        b.poll(lambda: url in self.rows(".webhook-url"), "the new row")
        found = [e for e in s.ok("GET", "/api/webhooks/get") if e["webhook"] == url]
        check(len(found) == 1 and found[0]["enabled"], f"the API lists the new webhook once: {found}")
        b.check_logs("new webhook")

    def read_key(self):
        b = self.b
        self.signout()
        self.signin("read")
        b.click(b.nav("Webhooks"))
        b.on_page("webhooks")
        b.poll(lambda: b.all(".webhook-url"), "the list for a read key")
        check("Read-only" in b.text(".notice.read-only"), "a read-only notice")
        new = b.one("#new-webhook")
        check(not new.is_enabled() and "admin" in (new.get_attribute("title") or ""), "New Webhook is disabled with a reason")
        deletes = b.all("button[data-delete]")
        check(deletes and all(not x.is_enabled() for x in deletes), "Delete buttons are disabled")
        b.shot("read-key")
        b.click(b.xp(f"//a[@class='webhook-id' and text()='{self.ids['endpoint']}']"))
        b.on_page("webhooks/:id")
        for css in ("#save-endpoint", "#rotate-secret", "#reveal-secret"):
            check(not b.one(css).is_enabled(), f"{css} is disabled for a read key")
        b.click(b.nav("Triggers"))
        b.on_page("triggers")
        check(not b.one("#add-trigger").is_enabled(), "Add trigger is disabled for a read key")
        b.click(b.nav("Campaigns"))
        b.on_page("campaigns")
        b.click(b.xp("//a[@class='campaign-name' and text()='Spring launch']"))
        b.on_page("campaigns/:id")
        buttons = b.poll(lambda: b.all("#campaign-actions button"), "the transition buttons")
        check(all(not x.is_enabled() for x in buttons), "the campaign's transitions are disabled for a read key")
        b.check_logs("read key")


SHOTS = ("signin", "overview", "webhooks", "webhook", "deliveries", "delivery", "triggers", "trigger", "action-log",
         "campaigns", "campaign", "contacts", "contact", "settings", "new-webhook", "read-key")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/debug/leadstream", help="the leadstream binary")
    ap.add_argument("--screenshots", default="console-screenshots", help="where the PNGs go")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    check(os.access(binary, os.X_OK), f"no executable at {binary}")
    check(os.access(FIREFOX, os.X_OK), f"no Firefox at {FIREFOX} (set FIREFOX=...)")
    os.makedirs(args.screenshots, exist_ok=True)

    receiver = Receiver()
    server = Server(binary)
    browser = None
    step = "start"
    try:
        server.start()
        log(f"server at {server.base}, data dir {server.dir}, receiver on {receiver.port}")
        browser = Firefox(server.base, args.screenshots)
        c = Check(server, receiver, browser)
        step = "seed"
        c.seed()
        for step, fn in (("sign in", lambda: c.signin("admin", first=True)),
                         ("pages", c.pages),
                         ("new webhook", c.new_webhook),
                         ("read key", c.read_key)):
            log(f"step: {step}")
            fn()
        if browser.warnings:
            log("Firefox warnings (not failures):\n  " + "\n  ".join(browser.warnings))
        missing = [n for n in SHOTS if not os.path.exists(os.path.join(args.screenshots, f"firefox-{n}.png"))]
        check(not missing, f"screenshots missing: {missing}")
        log(f"PASS: every page in Firefox, screenshots in {args.screenshots}")
        return 0
    except Exception as e:
        log(f"FAIL in step '{step}': {e}")
        traceback.print_exc()
        if browser and browser.m is not None:
            try:
                png = browser.m.screenshot(full=True, format="binary")
                with open(os.path.join(args.screenshots, f"FAILED-firefox-{step.replace(' ', '-')}.png"), "wb") as f:
                    f.write(png)
                print("url:", browser.m.get_url())
                print("browser problems:", browser.problems())
            except Exception:
                pass
        for path, what in ((browser.stdout_path if browser else None, "Firefox output"),
                           (os.path.join(server.dir, "serve.log"), "server log")):
            try:
                with open(path, errors="replace") as f:
                    print(f"{what} tail:\n" + f.read()[-3000:])
            except (OSError, TypeError):
                pass
        return 1
    finally:
        if browser:
            browser.quit()
        server.close()
        receiver.stop()


if __name__ == "__main__":
    sys.exit(main())
