"""The web console in a real browser (headless Chromium from the system packages, driven by
Selenium and ChromeDriver) against real hsm-node processes and a real kms-frontend: sign in, see the
store CONNECTED, create a key, disconnect the store and see the key become Unavailable, reconnect,
see an HSM node go unreachable when it is killed, and be refused, as the API refuses, an action the
principal may not take.

Skipped, with the reason printed, where no browser can run (no chromium / chromedriver / selenium)."""
from __future__ import annotations

import json
import shutil
import signal
import sys

import pytest

from tests.harness import free_port
from tests.integration.test_keys_common import start_env

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    SELENIUM = ""
except ImportError as exc:  # pragma: no cover - depends on the machine
    SELENIUM = str(exc)

WAIT_S = 45.0  # live refresh every 2 s; generous for a loaded machine
VIEWER_KEY, VIEWER_SECRET = "AKIAVIEWER0000000001", "viewer-secret-0123456789abcdefghijklmnop"


def _why_no_browser() -> str:
    if SELENIUM:
        return f"selenium is not installed ({SELENIUM})"
    if not CHROMIUM or not CHROMEDRIVER:
        return "no chromium/chromedriver on this machine (Debian: apt-get install chromium chromium-driver)"
    return ""


@pytest.fixture(scope="module")
def browser():
    reason = _why_no_browser()
    if reason:
        print(f"\nSKIPPED console browser test: {reason}", file=sys.stderr)
        pytest.skip(reason)
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        reason = f"chromium did not start: {exc.msg}"
        print(f"\nSKIPPED console browser test: {reason}", file=sys.stderr)
        pytest.skip(reason)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    principals = root / "principals.json"
    principals.write_text(json.dumps({"principals": [{
        "arn": "arn:aws:iam::111122223333:user/viewer",
        "access_keys": [{"id": VIEWER_KEY, "secret": VIEWER_SECRET}],
        "policies": [{"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["kms:Describe*", "kms:List*", "kms:Get*"], "Resource": "*"}]}]}]}))
    port = free_port()
    e = await start_env(root, nodes=3, fe_env={"KMS_CONSOLE_LISTEN": f"127.0.0.1:{port}",
                                                "KMS_PRINCIPALS_FILE": str(principals)})
    e.console_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        yield e
    finally:
        await e.close()


def wait_for(driver, what: str, condition):  # type: ignore[no-untyped-def]
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(lambda d: condition(d), message=what)
    except TimeoutException:  # say what the page showed instead
        shown = driver.find_element(By.TAG_NAME, "body").text[:1500]
        raise AssertionError(f"{what}: not within {WAIT_S:.0f} s; at {driver.current_url} the page showed:\n{shown}") from None


def sign_in(driver, url: str, key_id: str, secret: str) -> None:  # type: ignore[no-untyped-def]
    driver.delete_all_cookies()
    driver.get(url + "/signin")
    driver.find_element(By.ID, "access_key_id").send_keys(key_id)
    driver.find_element(By.ID, "secret_access_key").send_keys(secret)
    driver.find_element(By.ID, "signin").click()


# The pages refresh themselves every 2 s (the main part is replaced), so an element found a moment
# ago may be gone: every read and click looks the element up again until it works. Chromium says
# "gone" in two ways: a stale reference, or "Node with given id does not belong to the document".


def replaced(exc: Exception) -> bool:  # type: ignore[no-untyped-def]
    return isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)


def text(driver, css: str) -> str:  # type: ignore[no-untyped-def]
    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except WebDriverException as exc:
        if not replaced(exc):
            raise
        return ""


def cell(driver, table: str, row_attr: str, value: str, role: str = "state") -> str:  # type: ignore[no-untyped-def]
    return text(driver, f"#{table} tr[{row_attr}='{value}'] [data-role='{role}']")


def cluster_state(driver, cluster_id: str) -> str:  # type: ignore[no-untyped-def]
    return text(driver, f"section[data-cluster='{cluster_id}'] [data-role='cluster-state']")


def flashes(driver) -> list[str]:  # type: ignore[no-untyped-def]
    try:
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".flash")]
    except WebDriverException as exc:
        if not replaced(exc):
            raise
        return []


def click(driver, css: str) -> None:  # type: ignore[no-untyped-def]
    def clicked(d) -> bool:  # type: ignore[no-untyped-def]
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return True
        except NoSuchElementException:
            return False
        except WebDriverException as exc:
            if not replaced(exc):
                raise
            return False
    wait_for(driver, f"to click {css}", clicked)


async def test_the_console_as_an_operator_uses_it(env, browser, tmp_path):
    url, store = env.console_url, env.store_id
    root_key, root_secret = env.fe.aws_credentials()

    # A wrong secret is refused without saying which part was wrong.
    sign_in(browser, url, root_key, "not-the-secret")
    wait_for(browser, "the refusal", lambda d: "not valid" in " ".join(e.text for e in d.find_elements(By.ID, "signin-error")))

    sign_in(browser, url, root_key, root_secret)
    wait_for(browser, "the stores page", lambda d: d.current_url.endswith("/stores"))
    assert browser.find_element(By.ID, "principal").text == "arn:aws:iam::111122223333:root"
    wait_for(browser, "the store CONNECTED", lambda d: cell(d, "stores", "data-store", store) == "CONNECTED")

    # Create a key from the keys page.
    browser.get(url + "/keys")
    browser.find_element(By.ID, "create-key-description").send_keys("made in the console")  # typing holds refresh
    click(browser, "#create-key-button")
    created = wait_for(browser, "the created-key message",
                       lambda d: next((f for f in flashes(d) if f.startswith("Created key ")), None))
    key_id = created.split()[2]
    wait_for(browser, "the new key Enabled", lambda d: cell(d, "keys", "data-key", key_id) == "Enabled")
    assert (await env.key_state(key_id)) == "Enabled"  # the API sees what the console made

    # Disconnect the store: the key becomes Unavailable (the page refreshes by itself).
    browser.get(url + "/stores")
    click(browser, f"tr[data-store='{store}'] [data-action='disconnect']")
    wait_for(browser, "the store DISCONNECTED", lambda d: cell(d, "stores", "data-store", store) == "DISCONNECTED")
    browser.get(url + "/keys")
    wait_for(browser, "the key Unavailable", lambda d: cell(d, "keys", "data-key", key_id) == "Unavailable")
    browser.save_screenshot(str(tmp_path / "keys-unavailable.png"))

    # Reconnect: CONNECTED again, and the key Enabled again.
    browser.get(url + "/stores")
    click(browser, f"tr[data-store='{store}'] [data-action='connect']")
    wait_for(browser, "the store CONNECTED again", lambda d: cell(d, "stores", "data-store", store) == "CONNECTED")
    browser.get(url + "/keys")
    wait_for(browser, "the key Enabled again", lambda d: cell(d, "keys", "data-key", key_id) == "Enabled")

    # The CloudHSM page shows what DescribeClusters shows (the cluster ACTIVE, its HSMs with their
    # ids, states and Availability Zones) with each node's health. Kill a node: it goes UNREACHABLE,
    # its HSM and the cluster DEGRADED, as the API reports them; the others stay healthy.
    victim = env.nodes[2]
    browser.get(url + "/hsm")
    wait_for(browser, "three healthy HSMs", lambda d: all(
        cell(d, "main", "data-endpoint", n.endpoint, "health") == "HEALTHY" for n in env.nodes))
    assert cluster_state(browser, env.cluster_id) == "ACTIVE"
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-endpoint='{victim.endpoint}']")
    assert row.get_attribute("data-hsm").startswith("hsm-") and "us-east-1" in row.text
    assert browser.find_elements(By.ID, "backups")  # the backups table (DescribeBackups), maybe empty
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=20)
    wait_for(browser, "the killed HSM unreachable",
             lambda d: cell(d, "main", "data-endpoint", victim.endpoint, "health") == "UNREACHABLE")
    wait_for(browser, "the cluster DEGRADED",
             lambda d: cluster_state(d, env.cluster_id) == "DEGRADED")
    assert cell(browser, "main", "data-endpoint", victim.endpoint) == "DEGRADED"
    assert cell(browser, "main", "data-endpoint", env.nodes[0].endpoint, "health") == "HEALTHY"

    # A principal that may only read sees the key but is refused, as the API refuses it, a change.
    sign_in(browser, url, VIEWER_KEY, VIEWER_SECRET)
    # The sign-in form's answer sets the session cookie: navigating before it arrives aborted it.
    wait_for(browser, "the viewer signed in", lambda d: d.current_url.endswith("/stores"))
    browser.get(url + "/keys")
    wait_for(browser, "the viewer sees the key", lambda d: cell(d, "keys", "data-key", key_id) == "Enabled")
    click(browser, f"tr[data-key='{key_id}'] [data-action='disable']")
    refusal = wait_for(browser, "the refusal", lambda d: next((f for f in flashes(d) if "AccessDenied" in f), None))
    assert "arn:aws:iam::111122223333:user/viewer is not authorized to perform: kms:DisableKey" in refusal
    assert cell(browser, "keys", "data-key", key_id) == "Enabled"
    # ... and, with no cloudhsm permission, the CloudHSM page shows the API's refusal instead of clusters.
    browser.get(url + "/hsm")
    denied = browser.find_element(By.ID, "clusters-denied").text
    assert "AccessDeniedException" in denied and "cloudhsm:DescribeClusters" in denied
    assert not browser.find_elements(By.CSS_SELECTOR, "section.cluster")


async def test_the_console_refuses_what_is_not_signed_in_or_not_its_own(env):
    """No browser needed: what an attacker on the machine could send the console's port."""
    import aiohttp

    url = env.console_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # an IP address host
        for path in ("/", "/stores", "/keys", "/hsm", "/activity"):
            async with http.get(url + path, allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/signin", path
        async with http.get(url + "/api/activity") as r:
            assert r.status == 401
        async with http.post(url + "/action", data={"operation": "DisableKey", "key_id": "x"},
                             allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/signin"
        async with http.get(url + "/static/../server.py") as r:
            assert r.status in (403, 404)
        key_id, secret = env.fe.aws_credentials()
        # Another site's page posting the sign-in form (to sign the victim in as the attacker) is refused.
        async with http.post(url + "/signin", data={"access_key_id": key_id, "secret_access_key": secret},
                             headers={"Origin": "https://evil.example"}, allow_redirects=False) as r:
            assert r.status == 403 and "kms_console" not in r.cookies
        # Session fixation: a session id chosen beforehand is not adopted; sign-in issues a fresh one.
        http.cookie_jar.update_cookies({"kms_console": "chosen-by-the-attacker"})
        async with http.post(url + "/signin", data={"access_key_id": key_id, "secret_access_key": secret},
                             allow_redirects=False) as r:
            assert r.status == 302
            cookie = r.cookies["kms_console"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert cookie.value != "chosen-by-the-attacker" and len(cookie.value) >= 40
        async with aiohttp.ClientSession(cookies={"kms_console": "chosen-by-the-attacker"}) as other:
            async with other.get(url + "/stores", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/signin"
        async with http.get(url + "/stores") as r:
            page = await r.text()
            assert r.status == 200 and env.store_id in page
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        # A form posted without the session's CSRF token (another site's page) changes nothing.
        async with http.post(url + "/action", data={"operation": "DisconnectCustomKeyStore",
                                                    "store_id": env.store_id, "csrf": "forged"}) as r:
            assert r.status == 403
        assert await env.connection_state() == "CONNECTED"
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        async with http.post(url + "/action", data={"operation": "DeleteCustomKeyStore", "csrf": csrf}) as r:
            assert r.status == 400  # not an action the console offers
        for back in ("https://evil.example/", "//evil.example/", "/\\evil.example/", "/keys/../../x"):
            async with http.post(url + "/action", data={"operation": "CreateAlias", "csrf": csrf, "key_id": "nope",
                                                        "alias_name": "alias/x", "back": back},
                                 allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/stores", back  # never to another site
        # A form with the right token posted from another origin is refused before it is read.
        async with http.post(url + "/action", data={"operation": "DisconnectCustomKeyStore", "csrf": csrf,
                                                    "store_id": env.store_id},
                             headers={"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}) as r:
            assert r.status == 403
        assert await env.connection_state() == "CONNECTED"
        # A malformed form is an error message on the page, never a 500.
        async with http.post(url + "/action", data={"operation": "EnableKey", "csrf": csrf}) as r:
            assert r.status == 200 and "The form lacks the field &#39;key_id&#39;" in await r.text()

        # Markup in what API callers can set (description, tags) is shown as text, never run: Jinja
        # escapes it, and the CSP would refuse an inline script anyway.
        payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
        async with http.post(url + "/action", data={
                "operation": "CreateKey", "csrf": csrf, "store_id": env.store_id, "description": payload,
                "tags": 'Owner=<b onmouseover="alert(3)">x</b>', "back": "/keys"}) as r:
            page = await r.text()
        assert r.status == 200 and "Created key " in page, page[:2000]
        new_key = page.split("Created key ")[1].split()[0]
        for path in ("/keys", f"/keys/{new_key}"):
            async with http.get(url + path) as r:
                page = await r.text()
            assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page, path
            assert "&lt;b onmouseover=&#34;alert(3)&#34;&gt;" in page, path
            assert "<script>alert" not in page and "<img src=x" not in page and "<b onmouseover" not in page


async def test_every_action_of_the_console_works_and_its_pages_show_the_result(env):
    """No browser needed: each action the pages offer, posted as the pages post it, and what the
    keys page and a key's page then show (state, aliases, tags, policy, grants, deletion date)."""
    import aiohttp
    import boto3

    url = env.console_url
    key_id, secret = env.fe.aws_credentials()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(url + "/signin", data={"access_key_id": key_id, "secret_access_key": secret}) as r:
            page = await r.text()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]

        async def act(operation: str, **fields: str) -> str:
            async with http.post(url + "/action", data={"operation": operation, "csrf": csrf, **fields}) as r:
                assert r.status == 200, operation
                return await r.text()

        async def key_page(key: str) -> str:
            async with http.get(f"{url}/keys/{key}") as r:
                assert r.status == 200
                return await r.text()

        page = await act("CreateKey", store_id=env.store_id, description="every action", tags="Team=ops",
                         back="/keys")
        key = page.split("Created key ")[1].split()[0]
        assert "Team=ops" in page  # the keys list shows tags
        assert "Disabled " + key in await act("DisableKey", key_id=key, back=f"/keys/{key}")
        assert await env.key_state(key) == "Disabled"
        assert "Enabled " + key in await act("EnableKey", key_id=key)
        assert await env.key_state(key) == "Enabled"
        page = await act("ScheduleKeyDeletion", key_id=key, days="7", back=f"/keys/{key}")
        assert "will be deleted after 7 days" in page and "PendingDeletion" in page and "Deletion date" in page
        assert "Deletion of" in await act("CancelKeyDeletion", key_id=key)
        assert await env.key_state(key) == "Disabled"  # as AWS leaves a key whose deletion is cancelled
        await act("EnableKey", key_id=key)
        assert "Created alias/console-made" in await act("CreateAlias", key_id=key, alias_name="alias/console-made")
        # a refusal of the service is shown with its AWS name, on the page
        page = await act("CreateAlias", key_id=key, alias_name="alias/console-made")
        assert "AlreadyExistsException" in page

        kms = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{env.fe.aws_port}", region_name="us-east-1",
                           aws_access_key_id=key_id, aws_secret_access_key=secret)
        kms.create_grant(KeyId=key, GranteePrincipal="arn:aws:iam::111122223333:root",
                         Operations=["Encrypt", "Decrypt"], Name="console-grant")
        page = await key_page(key)
        for shown in ("alias/console-made", "Team", "ops", "console-grant", "Encrypt, Decrypt",
                      "Enable IAM User Permissions", "every action", "Enabled"):
            assert shown in page, shown
