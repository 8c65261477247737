"""The web console in headless Chromium (Selenium), every journey end to end.

Run by crates/testkit/tests/console_browser.rs against a live server; prints
`N passed, M failed` last. Environment: CONSOLE_BASE_URL, CONSOLE_MAIL_URL (the test's
outbox reader), CONSOLE_FILES (a folder with lease.pdf), CONSOLE_SCREENSHOTS, CONSOLE_ADMIN_*,
CONSOLE_CHROMEDRIVER.
"""

import json
import os
import re
import shutil
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ["CONSOLE_BASE_URL"]
MAIL = os.environ["CONSOLE_MAIL_URL"]
FILES = os.environ["CONSOLE_FILES"]
SHOTS = os.environ["CONSOLE_SCREENSHOTS"]
ADMIN_EMAIL = os.environ["CONSOLE_ADMIN_EMAIL"]
ADMIN_PASSWORD = os.environ["CONSOLE_ADMIN_PASSWORD"]

ALICE = "alice@example.com"
ALICE_PASSWORD = "a long pass phrase 1"
ALICE_NEW_PASSWORD = "another long pass phrase 2"
BOB = "bob@example.com"
BOB_PASSWORD = "bobs long pass phrase 3"
HOSTILE_NAME = "<img src=x onerror=window.__xss='name'>.txt"

passed = 0
failed = 0
requests_seen = []
documents_seen = []


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


options = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,900", "--disable-extensions", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-default-apps", "--disable-sync", "--metrics-recording-only"):
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
# Debian's chromium and its chromedriver, never a download (Selenium Manager would fetch one).
browser = shutil.which(os.environ.get("CHROME", "chromium")) or shutil.which("chromium-browser")
if browser:
    options.binary_location = browser
chromedriver = shutil.which(os.environ.get("CONSOLE_CHROMEDRIVER", "chromedriver"))
driver = webdriver.Chrome(service=Service(chromedriver), options=options)
driver.set_page_load_timeout(20)
# Every CSP violation is recorded (an injected handler or inline style would be one).
driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")})


def drain_network():
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            requests_seen.append(msg["params"]["request"]["url"])
        elif msg["method"] == "Network.responseReceived" and msg["params"]["type"] == "Document":
            documents_seen.append(msg["params"]["response"])


def wait(cond, timeout=15, what="condition"):
    try:
        # The console re-renders as it goes: an element read between two renders is retried.
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: cond())
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}")


def find(css, timeout=15):
    return wait(lambda: next((e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), None),
                timeout, css)


def finds(css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def js(script, *args):
    return driver.execute_script(script, *args)


def hash_is(h, timeout=15):
    wait(lambda: driver.execute_script("return location.hash") == h, timeout, f"the address {h}")


def go(h):
    driver.execute_script("location.hash = arguments[0]", h)
    hash_is(h)


def h1():
    return find("main h1").text


def h1_is(text, timeout=15):
    wait(lambda: any(e.text == text for e in finds("main h1")), timeout, f"the heading {text!r}")


def fill(form, **fields):
    f = find(form)
    for name, value in fields.items():
        el = f.find_element(By.NAME, name)
        el.clear()
        el.send_keys(value)
    return f


def submit(form, **fields):
    f = fill(form, **fields)
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def status():
    return js("return document.getElementById('status').textContent")


def status_has(text, timeout=10):
    wait(lambda: text in status(), timeout, f"the status {text!r} (it is {status()!r})")


def shot(name):
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def mail(address, after=None, timeout=10):
    """The newest mail to `address` (one other than `after`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{MAIL}/mail/{urllib.parse.quote(address)}") as res:
                body = res.read().decode()
                if body != after:
                    return body
        except urllib.error.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no mail to {address}")


def latest(address):
    """The newest mail to `address` now, or None."""
    try:
        with urllib.request.urlopen(f"{MAIL}/mail/{urllib.parse.quote(address)}") as res:
            return res.read().decode()
    except urllib.error.HTTPError:
        return None


def code_in(body):
    return re.search(r"\b(\d{6})\b", body).group(1)


def token_in(body):
    return re.search(r"\n\n(\S+)\n\n", body).group(1)


def no_injection(where):
    """Nothing a document, a name or a model wrote became markup; no CSP violation."""
    injected = js("return document.querySelectorAll('img[src=\"x\"], main script, [onerror]').length")
    check(f"{where}: no element injected", injected == 0, f"{injected} injected")
    check(f"{where}: no script ran from data", js("return window.__xss === undefined"), js("return window.__xss"))
    violations = js("return window.__csp || []")
    check(f"{where}: no Content-Security-Policy violation", not violations, violations)


def labelled(where):
    """Every visible form control has a label (or an aria-label)."""
    missing = js("""return [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.name || e.id)""")
    check(f"{where}: every control is labelled", not missing, missing)


def sign_out():
    find("#sign-out").click()
    hash_is("#/signin")


def sign_in(email, password):
    go("#/signin")
    submit("#signin-form", email=email, password=password)
    wait(lambda: js("return location.hash") in ("#/documents", "#/orgs"), 15, "signed in")


def step(name):
    def wrap(fn):
        global failed
        started = time.time()
        try:
            fn()
        except Exception:  # noqa: BLE001 - a failed step is reported, the next ones still run
            failed += 1
            print(f"FAIL {name}: {traceback.format_exc()}")
            shot(f"failed-{re.sub(r'[^a-z0-9]+', '-', name.lower())}")
        drain_network()
        print(f"--   {name}: {time.time() - started:.1f} s")
        return fn
    return wrap


# ---------------------------------------------------------------- journey 1: accounts
@step("sign up, create an organization")
def _():
    driver.get(BASE + "/")
    hash_is("#/signin")
    check("the console opens on sign-in", h1() == "Sign in")
    labelled("sign-in")
    shot("signin")
    find("a[href='#/signup']").click()
    h1_is("Create an account")
    submit("#signup-form", name="Alice", email=ALICE, password=ALICE_PASSWORD)
    hash_is("#/orgs")
    submit("#org-form", name="Acme <b>Corp</b>", slug="acme")
    hash_is("#/documents")
    check("the new organization is current, its name shown as text",
          "Acme <b>Corp</b> (owner)" in Select(find("#nav select")).first_selected_option.text)
    check("no token in localStorage or cookies", js("return localStorage.length") == 0 and js("return document.cookie") == "")
    refresh = js("return sessionStorage.getItem('quire.refresh')")
    check("the refresh token is in sessionStorage", (refresh or "").startswith("qr_"), refresh)


@step("the session survives a reload and refreshes itself with a rotated token")
def _():
    before = js("return sessionStorage.getItem('quire.refresh')")
    driver.refresh()
    h1_is("Documents")
    after = js("return sessionStorage.getItem('quire.refresh')")
    check("a reload keeps the session (refreshed)", after and after != before)
    # The console's own refresh (its timer calls the same function before the token expires).
    spent = after
    js("return import('/console/api.js').then(m => m.refresh())")
    wait(lambda: js("return sessionStorage.getItem('quire.refresh')") != spent, 10, "a rotation")
    # An attacker replaying the spent token revokes the whole session: the console signs out.
    res = js("""return fetch('/api/v1/auth/refresh', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({refresh_token: arguments[0]})}).then(r => r.status)""", spent)
    check("a spent refresh token is refused", res == 401, res)
    driver.refresh()
    hash_is("#/signin")
    check("after the reuse the session is gone: sign-in again", h1() == "Sign in")


@step("sign in with a password (a wrong one is refused in words), by keyboard")
def _():
    submit("#signin-form", email=ALICE, password="not the password")
    wait(lambda: "error" in find("#status").get_attribute("class"), 10, "an error")
    check("a wrong password is refused in words", len(status()) > 10, status())
    form = find("#signin-form")
    email = form.find_element(By.NAME, "email")
    email.clear()
    email.send_keys(ALICE)
    email.send_keys(Keys.TAB)
    active = driver.switch_to.active_element
    check("Tab moves from the email to the password", active.get_attribute("name") == "password")
    active.clear()
    active.send_keys(ALICE_PASSWORD + Keys.ENTER)
    hash_is("#/documents")
    sign_out()
    check("signing out forgets the refresh token", js("return sessionStorage.getItem('quire.refresh')") is None)
    js("location.hash = '#/documents'")
    hash_is("#/signin")
    check("a page needing a session leads to sign-in", h1() == "Sign in")


@step("sign in with an emailed code")
def _():
    find("a[href='#/code']").click()
    h1_is("Sign in with a code")
    before = latest(ALICE)
    submit("#code-request-form", email=ALICE)
    code = code_in(mail(ALICE, after=before))
    submit("#code-verify-form", code=code)
    hash_is("#/documents")
    sign_out()


@step("forgotten password")
def _():
    go("#/forgot")
    before = latest(ALICE)
    submit("#forgot-form", email=ALICE)
    token = token_in(mail(ALICE, after=before))
    submit("#reset-form", token=token, new_password=ALICE_NEW_PASSWORD)
    hash_is("#/signin")
    status_has("password is changed")
    sign_in(ALICE, ALICE_NEW_PASSWORD)
    check("signed in with the new password", js("return location.hash") == "#/documents")


# ---------------------------------------------------------------- journey 2: documents
@step("collections, uploads with progress, live status, chunks with pages, re-index, delete")
def _():
    go("#/documents")
    submit("#collection-form", name="Contracts")
    status_has("Created the collection Contracts")
    wait(lambda: Select(find("#collection-select")).first_selected_option.text == "Contracts", 10, "the collection")
    labelled("documents")
    notes = os.path.join(FILES, "notes.txt")
    with open(notes, "w") as f:
        f.write("House rules. <script>window.__xss='script'</script> Rent is paid monthly. "
                "<img src=x onerror=\"window.__xss='text'\"> Pets need the landlord's consent.\n")
    hostile = os.path.join(FILES, HOSTILE_NAME)
    with open(hostile, "w") as f:
        f.write("A file with a hostile name. The deposit is returned within thirty days.\n")
    exe = os.path.join(FILES, "tool.exe")
    with open(exe, "wb") as f:
        f.write(b"MZ\x90\x00" + bytes(range(256)) * 8)
    driver.find_element(By.ID, "file-input").send_keys("\n".join(
        [os.path.join(FILES, "lease.pdf"), notes, hostile, exe]))
    wait(lambda: len(finds("#uploads li")) == 4, 10, "four uploads")
    wait(lambda: all(li.find_element(By.CSS_SELECTOR, ".state").text != "uploading"
                     for li in finds("#uploads li")), 20, "the uploads to end")
    rows = {li.get_attribute("data-name"): li for li in finds("#uploads li")}
    for name in ("lease.pdf", "notes.txt", HOSTILE_NAME):
        li = rows.get(name)
        check(f"{name}: its progress bar reached 100%", li is not None
              and li.find_element(By.TAG_NAME, "progress").get_attribute("value") == "100")
    exe_state = rows["tool.exe"].find_element(By.CSS_SELECTOR, ".state").text
    check("an unsupported file is refused in words", "not accepted" in exe_state or "not supported" in exe_state, exe_state)
    # Drag and drop: a file dropped on the zone.
    js("""const dt = new DataTransfer();
        dt.items.add(new File(['# Dropped\\n\\nThe rent is due on the first day of the month.'], 'dropped.md', {type: 'text/markdown'}));
        const zone = document.getElementById('dropzone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));""")
    wait(lambda: any(li.get_attribute("data-name") == "dropped.md" and li.get_attribute("data-document")
                     for li in finds("#uploads li")), 15, "the dropped file")
    check("a dropped file is uploaded", True)
    wait(lambda: len(finds("#documents-body tr[data-status]")) == 4
         and all(r.get_attribute("data-status") == "ready" for r in finds("#documents-body tr[data-status]")),
         60, "every document ready")
    check("the status of every document went live to ready", True)
    wait(lambda: js("""return [...document.querySelectorAll('#uploads li[data-document] .state')]
        .map(e => e.textContent)""") == ["ready"] * 4, 10, "every upload's line to say ready")
    check("each upload's line follows its document to ready", True)
    shot("documents")
    names = [a.text for a in finds("#documents-body .doc-name")]
    check("a hostile document name is shown as text", HOSTILE_NAME in names, names)
    no_injection("documents")
    # Chunks with pages.
    next(a for a in finds("#documents-body .doc-name") if a.text == "lease.pdf").click()
    h1_is("lease.pdf")
    wait(lambda: len(finds("#chunks li")) >= 2, 10, "the chunks")
    meta = " ".join(e.text for e in finds("#chunks li .muted"))
    check("the chunks show their pages", "page 1" in meta and "page 3" in meta, meta)
    shot("document")
    driver.back()
    h1_is("Documents")
    # Re-index, then delete.
    find("button[aria-label='Re-index notes.txt']").click()
    status_has("Re-indexing notes.txt")
    wait(lambda: any(r.get_attribute("data-status") == "ready" and "notes.txt" in r.text
                     for r in finds("#documents-body tr")), 30, "notes.txt ready again")
    check("a re-indexed document is ready again", True)
    find("button[aria-label='Delete dropped.md']").click()
    driver.switch_to.alert.accept()
    status_has("Deleted dropped.md")
    wait(lambda: all("dropped.md" not in r.text for r in finds("#documents-body tr")), 10, "the row gone")
    check("a deleted document leaves the list", True)
    no_injection("after the uploads")


# ---------------------------------------------------------------- journey 3: chat
def last_answer():
    answers = finds("#messages li.assistant")
    return answers[-1] if answers else None


def ask(question):
    count = len(finds("#messages li.assistant"))
    submit("#composer", content=question)
    wait(lambda: len(finds("#messages li.assistant")) == count + 1, 10, "an answer bubble")


@step("assistants")
def _():
    go("#/assistants")
    h1_is("Assistants")
    submit("#assistant-form", name="Lease helper", instructions="Answer from the lease only.")
    status_has("Created Lease helper")
    wait(lambda: any("Lease helper" in e.text for e in finds("#assistants li")), 10, "the assistant")
    check("a new assistant is listed", True)


@step("chat: a streamed answer, citation chips, feedback")
def _():
    go("#/chat")
    h1_is("Chat")
    labelled("chat")
    check("the new-chat form offers the assistant",
          "Lease helper" in [o.text for o in Select(find("#session-form select[name=assistant_id]")).options])
    submit("#session-form", title="Lease questions")
    wait(lambda: re.fullmatch(r"#/chat/[0-9a-f-]{36}", js("return location.hash")), 10, "the session")
    h1_is("Lease questions")
    ask("When is the monthly rent paid?")
    wait(lambda: len(last_answer().find_element(By.CSS_SELECTOR, ".text").text) > 10, 15, "the first deltas")
    partial = last_answer().find_element(By.CSS_SELECTOR, ".text").text
    check("the answer streams (text arrives before it ends)",
          last_answer().get_attribute("data-status") == "streaming" and len(partial) < 200, partial)
    wait(lambda: last_answer().get_attribute("data-status") == "complete", 20, "the answer's end")
    text = last_answer().find_element(By.CSS_SELECTOR, ".text").text
    check("the whole answer arrived", "three months of notice" in text, text)
    check("the stop button shows only while an answer streams", not finds("#stop")[0].is_displayed())
    check("markup in the answer is shown as text", "<img src=x onerror=" in text, text)
    no_injection("answer")
    chips = last_answer().find_elements(By.CSS_SELECTOR, ".chip")
    check("the answer has citation chips", len(chips) >= 1)
    chips[0].click()
    dialog = find("dialog#citation")
    title = dialog.find_element(By.ID, "citation-title").text
    quote = dialog.find_element(By.ID, "citation-quote").text
    check("a chip opens the quoted passage with its document", title in ("lease.pdf", "notes.txt", HOSTILE_NAME, "dropped.md") and len(quote) > 10, (title, quote))
    check("the passage names its page", "Page" in dialog.text or "No page number" in dialog.text)
    shot("citation")
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(lambda: not js("return document.getElementById('citation').open"), 5, "the dialog closed")
    last_answer().find_element(By.CSS_SELECTOR, "button[data-rating=up]").click()
    wait(lambda: last_answer().find_element(By.CSS_SELECTOR, "button[data-rating=up]").get_attribute("aria-pressed") == "true",
         10, "the vote")
    check("feedback up is recorded", True)
    shot("chat")


@step("chat: the stop button cancels the answer")
def _():
    ask("What about the deposit?")
    wait(lambda: len(last_answer().find_element(By.CSS_SELECTOR, ".text").text) > 5, 15, "the first deltas")
    check("the stop button shows while the answer streams", finds("#stop")[0].is_displayed())
    find("#stop").click()
    wait(lambda: last_answer().get_attribute("data-status") == "stopped", 5, "stopped")
    stopped_text = last_answer().find_element(By.CSS_SELECTOR, ".text").text
    check("a stopped answer keeps only what arrived", "three months of notice" not in stopped_text, stopped_text)
    # The server ends the run (no viewer left) and stores it incomplete.
    session = js("return location.hash").split("/")[-1]
    def stored_status():
        return js("""return import('/console/api.js').then(m => m.get('/chat/sessions/' + arguments[0] + '/messages?limit=100'))
            .then(p => p.items.filter(m => m.role === 'assistant').pop().status)""", session)
    wait(lambda: stored_status() == "incomplete", 15, "the stored answer incomplete")
    check("the stopped answer is stored incomplete", True)


@step("chat: a reload while an answer streams resumes it")
def _():
    ask("How long does the lease run?")
    wait(lambda: len(last_answer().find_element(By.CSS_SELECTOR, ".text").text) > 20, 15, "the first deltas")
    check("the answer is streaming at the reload", last_answer().get_attribute("data-status") == "streaming")
    driver.refresh()
    h1_is("Lease questions")
    wait(lambda: last_answer() is not None and last_answer().get_attribute("data-status") == "streaming", 10,
         "the resumed answer")
    wait(lambda: last_answer().get_attribute("data-status") == "complete", 25, "the resumed answer's end")
    text = last_answer().find_element(By.CSS_SELECTOR, ".text").text
    check("the resumed answer is whole", text.startswith("The tenant pays") and "three months of notice" in text, text)
    check("the resumed answer has its chips", len(last_answer().find_elements(By.CSS_SELECTOR, ".chip")) >= 1)
    no_injection("resumed answer")


# ---------------------------------------------------------------- journey 4: organization
invitation_link = {}


@step("members, invitations (invite, list, revoke), API keys (shown once, list, revoke)")
def _():
    go("#/members")
    wait(lambda: len(finds("#members tbody tr")) == 1, 10, "the members")
    row = find("#members tbody tr").text
    check("the owner is the one member", "(you)" in row, row)
    check("a member is shown by name and email", "Alice" in row and ALICE in row, row)
    submit("#invite-form", email=BOB)
    link = find("#invitation-link").get_attribute("value")
    check("an invitation gives a link to accept", link.startswith(BASE + "/#/accept/qi_"), link)
    invitation_link["bob"] = link
    submit("#invite-form", email="carol@example.com")
    wait(lambda: len(finds("#invitations tr")) == 2, 10, "two invitations")
    shot("members")
    find("button[aria-label='Revoke the invitation of carol@example.com']").click()
    wait(lambda: len(finds("#invitations tr")) == 1, 10, "one invitation")
    driver.refresh()
    wait(lambda: len(finds("#invitations tr")) == 1, 10, "one invitation after a reload")
    check("a revoked invitation leaves the list", "bob@example.com" in find("#invitations").text)
    go("#/keys")
    h1_is("API keys")
    submit("#key-form", name="ci")
    secret = find("#key-secret").get_attribute("value")
    check("a new key's secret is shown", secret.startswith("qk_"), secret)
    shot("api-keys")
    driver.refresh()
    h1_is("API keys")
    wait(lambda: len(finds("#keys tr")) == 1, 10, "the key")
    check("the secret is shown only once", secret not in driver.page_source and not finds("#key-secret"))
    find("button[aria-label='Revoke ci']").click()
    driver.switch_to.alert.accept()
    wait(lambda: len(finds("#keys tr")) == 0, 10, "the key revoked")
    code = js("""return fetch('/api/v1/collections', {headers: {Authorization: 'Bearer ' + arguments[0]}}).then(r => r.status)""", secret)
    check("a revoked key is refused", code == 401, code)


@step("accept an invitation by its link; create and switch organizations")
def _():
    sign_out()
    # The invitee opens the link signed out: sign-up first, then back to the invitation.
    driver.get(invitation_link["bob"])
    hash_is("#/signin")
    find("a[href='#/signup']").click()
    submit("#signup-form", name="Bob", email=BOB, password=BOB_PASSWORD)
    hash_is(invitation_link["bob"][len(BASE) + 1:])
    h1_is("Accept an invitation")
    before = latest(BOB)
    find("#confirm-request").click()
    code = code_in(mail(BOB, after=before))
    submit("#confirm-form", code=code)
    status_has("Your email is confirmed")
    find("#accept-button").click()
    hash_is("#/documents")
    check("the invitee joined the organization",
          "Acme <b>Corp</b> (member)" in Select(find("#nav select")).first_selected_option.text)
    wait(lambda: any(a.text == "lease.pdf" for a in finds("#documents-body .doc-name")), 10, "Acme's documents")
    go("#/orgs")
    submit("#org-form", name="Bob Co", slug="bob-co")
    hash_is("#/documents")
    check("the new organization is current", "Bob Co" in Select(find("#nav select")).first_selected_option.text)
    wait(lambda: "No documents yet." in find("#documents-body").text, 10, "an empty organization")
    Select(find("#nav select")).select_by_visible_text("Acme <b>Corp</b> (member)")
    wait(lambda: any(a.text == "lease.pdf" for a in finds("#documents-body .doc-name")), 10, "switched back")
    check("switching the organization switches the documents", True)
    go("#/keys")
    check("a member cannot manage keys", "Only admins" in find("main").text)
    go("#/admin")
    check("a member is no platform admin", "Only platform administrators" in find("main").text)
    sign_out()


# ---------------------------------------------------------------- journey 5: usage
@step("usage: plan, used and remaining, a chart, per model and per member")
def _():
    sign_in(ALICE, ALICE_NEW_PASSWORD)
    go("#/usage")
    h1_is("Usage")
    plan = find("#plan").text
    check("the plan is shown with its tokens", "Plan:" in plan and "tokens used" in plan, plan)
    check("the chart is drawn (inline SVG bars)", len(finds("svg.chart rect")) >= 3)
    for window, buckets in (("24h", 24), ("7d", 7), ("30d", 30)):
        driver.find_element(By.XPATH, f"//div[@aria-label='Window']/button[text()='{window}']").click()
        wait(lambda: find("div[aria-label='Window'] button[aria-pressed='true']").text == window, 10, f"the {window} window")
        points = finds("svg.chart.series rect.point")
        check(f"the {window} chart has one column per bucket ({buckets})", len(points) == buckets, len(points))
        used = [p for p in points if float(p.get_attribute("height")) > 0]
        check(f"the {window} chart shows the usage (in the latest bucket)", used and used[-1] == points[-1], len(used))
        titles = [t.get_attribute("textContent") for t in finds("svg.chart.series rect.point title")]
        check(f"each {window} column names its tokens", len(titles) == buckets and "tokens" in titles[-1], titles[-1:])
    tables = find("main").text
    check("usage per model lists the chat model", "gpt-4o-mini" in tables, tables[:400])
    shot("usage")
    go("#/members")
    wait(lambda: len(finds("#members tbody tr")) == 2, 10, "two members")
    members = find("#members").text
    check("the members page shows names and emails", all(x in members for x in ("Alice", ALICE, "Bob", BOB)), members)
    check("no member is shown by id alone", "@" in members and all("@" in r.text for r in finds("#members tbody tr")), members)
    sign_out()


# ---------------------------------------------------------------- journey 6: administration
@step("platform admin: users, organizations and plans, the audit log with filters")
def _():
    sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    go("#/admin")
    h1_is("Users")
    users = find("#admin-users").text
    check("the users are listed", ALICE in users and BOB in users, users)
    shot("admin-users")
    go("#/admin/orgs")
    h1_is("Organizations and plans")
    orgs = find("#admin-orgs").text
    check("the organizations are listed", "Acme <b>Corp</b>" in orgs and "Bob Co" in orgs, orgs)
    go("#/admin/audit")
    h1_is("Audit log")
    submit("#audit-filters", action="auth.login.failed")
    wait(lambda: finds("#audit tbody tr[data-action]"), 10, "filtered events")
    only = lambda: js("""return [...new Set([...document.querySelectorAll('#audit tbody tr[data-action]')]
        .map(r => r.dataset.action))]""")
    wait(lambda: only() == ["auth.login.failed"], 10, "only the failed sign-ins")
    check("the audit log filters by action", True)
    shot("admin-audit")
    labelled("audit")


# ---------------------------------------------------------------- phone width, origin
@step("phone width: no horizontal scrolling")
def _():
    driver.set_window_size(390, 844)
    for page, name in (("#/documents", "phone-documents"), ("#/chat", "phone-chat"), ("#/usage", "phone-usage")):
        go(page)
        time.sleep(0.5)
        wide = js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(f"{page} fits a phone's width", wide <= 1, wide)
        shot(name)
    driver.set_window_size(1280, 900)


@step("every request stays in the origin, the page carries the policy")
def _():
    drain_network()
    outside = [u for u in requests_seen if not (u.startswith(BASE + "/") or u == BASE or u.startswith("data:"))]
    check("the console made no request outside the origin", not outside and len(requests_seen) > 50, outside[:5])
    api = [u for u in requests_seen if u.startswith(BASE + "/") and not (
        u.startswith(BASE + "/api/v1/") or u.startswith(BASE + "/console/") or u.split("#")[0] == BASE + "/")]
    check("the console calls only the public /api/v1", not api, api[:5])
    policies = {(d["url"], d["status"], (d.get("headers") or {}).get("content-security-policy"))
                for d in documents_seen if d["url"].startswith(BASE)}
    check("the console's pages carry the Content-Security-Policy",
          policies and all(p and "script-src 'self'" in p and "default-src 'none'" in p for _, _, p in policies), policies)


driver.quit()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
