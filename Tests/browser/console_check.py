"""Drives the Mizan console in headless Chromium, as an operator would.

Run by the Swift end-to-end test `ConsoleBrowserTests` against real `mizan-gateway`,
`mizan-agent` and `mizan-mock-provider` processes on loopback. It signs in, creates a key,
creates a node and starts its agent, watches the node appear without a reload, sends a request
through the agent, opens its job, checks usage and its CSV, revokes the key, signs out, and
saves a screenshot of each page. It prints one line per step and exits non-zero on the first
failure, saying what it expected.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def step(message):
    print(f"ok {message}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--admin-token", required=True)
    parser.add_argument("--agent", required=True, help="the mizan-agent executable")
    parser.add_argument("--provider", required=True, help="the mock provider's /v1 URL")
    parser.add_argument("--model", required=True)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--work", required=True, help="a folder for the agent's token file and log")
    args = parser.parse_args()
    os.makedirs(args.screenshots, exist_ok=True)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    check(chromium is not None, "Chromium is not installed (Debian: apt-get install -y chromium chromium-driver)")
    check(driver_path is not None, "chromedriver is not installed (Debian: apt-get install -y chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-sync"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    agent = None
    try:
        agent = run(driver, args)
    finally:
        driver.quit()
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                agent.kill()


def shot(driver, args, name):
    path = os.path.join(args.screenshots, name)
    # The whole page, not only the window: grow the window to the document's height.
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 800)")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(height + 40, 4000))
    driver.save_screenshot(path)
    driver.set_window_size(width, 800)
    step(f"screenshot {name}")


def wait(driver, seconds=20):
    return WebDriverWait(driver, seconds, poll_frequency=0.2)


def api(args, method, path, key=None, body=None):
    request = urllib.request.Request(args.gateway + path, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def run(driver, args):
    base = args.gateway + "/console"

    # Signed out: every page leads to the sign-in form.
    driver.get(base + "/nodes")
    wait(driver).until(EC.url_contains("/console/sign-in"))
    check("Sign in to Mizan" in driver.page_source, "the sign-in page shows its title")
    shot(driver, args, "01-sign-in.png")

    # A wrong token is refused in the page, without the token echoed.
    field = driver.find_element(By.ID, "token")
    field.send_keys("not-the-token")
    field.submit()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.error")))
    check("That is not the admin token." in driver.page_source, "a wrong token is refused with a message")
    check("not-the-token" not in driver.page_source, "the refused token is not echoed")
    step("a wrong admin token is refused")

    field = driver.find_element(By.ID, "token")
    field.send_keys(args.admin_token)
    field.submit()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#overview-live")))
    check(args.admin_token not in driver.page_source, "the admin token is not in the page")
    check(args.admin_token not in driver.current_url, "the admin token is not in the URL")
    cookies = {cookie["name"]: cookie for cookie in driver.get_cookies()}
    session = cookies.get("mizan_console")
    check(session is not None, "a session cookie is set")
    check(session.get("httpOnly") is True, "the session cookie is HttpOnly")
    check(session.get("sameSite") == "Strict", f"the session cookie is SameSite=Strict: {session}")
    check(session.get("expiry") is not None, "the session cookie expires")
    check(args.admin_token not in session["value"], "the cookie does not carry the admin token")
    step("signed in; the session cookie is HttpOnly, SameSite=Strict and expiring")

    # Keys: create one, shown once.
    driver.find_element(By.LINK_TEXT, "Keys").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "create-key")))
    check("No keys yet" in driver.page_source, "an empty key list says so")
    driver.find_element(By.ID, "key-name").send_keys("browser-team")
    driver.find_element(By.ID, "key-rpm").send_keys("100")
    driver.find_element(By.ID, "key-budget").send_keys("5000000")
    Select(driver.find_element(By.ID, "key-priority")).select_by_value("batch")
    driver.find_element(By.ID, "key-weight").send_keys("3")
    driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=create-key] button[type=submit]").click()
    secret_field = wait(driver).until(EC.presence_of_element_located((By.ID, "new-key-secret")))
    key = secret_field.get_attribute("value")
    check(key.startswith("mzn_sk_"), f"the new key is shown: {key[:10]}")
    shot(driver, args, "02-keys-created.png")
    driver.get(base + "/keys")
    wait(driver).until(EC.presence_of_element_located((By.ID, "keys-live")))
    check(key not in driver.page_source, "the key is shown only once")
    check("browser-team" in driver.page_source and "100 requests/min" in driver.page_source, "the key is listed with its limit")
    check("batch · weight 3" in driver.page_source, "the key is listed with its priority and weight")
    step("created a key, shown once, listed with its settings")

    # Nodes: create one, start its agent with the shown token, and see it appear live.
    driver.find_element(By.LINK_TEXT, "Nodes").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "node-name")))
    check("No nodes yet" in driver.page_source, "an empty node list says so")
    driver.find_element(By.ID, "node-name").send_keys("browser-node")
    driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=create-node] button[type=submit]").click()
    token_field = wait(driver).until(EC.presence_of_element_located((By.ID, "registration-token")))
    registration = token_field.get_attribute("value")
    command = driver.find_element(By.ID, "agent-command").get_attribute("value")
    check(registration.startswith("mzn_reg_") or len(registration) > 20, "the registration token is shown")
    check("mizan-agent --gateway " + args.gateway in command, f"the agent command names this gateway: {command}")
    check(registration in command, "the command carries the registration token")
    shot(driver, args, "03-nodes-created.png")
    driver.get(base + "/nodes")
    wait(driver).until(EC.presence_of_element_located((By.ID, "nodes-live")))
    check(registration not in driver.page_source, "the registration token is shown only once")
    driver.execute_script("window.__mizanNoReload = 1")
    log = open(os.path.join(args.work, "agent.log"), "w")
    agent = subprocess.Popen(
        [args.agent, "--gateway", args.gateway, "--token-file", os.path.join(args.work, "node.token"),
         "--provider", args.provider, "--models", args.model, "--heartbeat-interval", "1"],
        env={**os.environ, "MIZAN_REGISTRATION_TOKEN": registration}, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    row = "//div[@id='nodes-live']//tr[.//strong[text()='browser-node']]"
    wait(driver, 40).until(EC.text_to_be_present_in_element((By.XPATH, row), "healthy"))
    check(driver.execute_script("return window.__mizanNoReload") == 1, "the node appeared without a page reload")
    check(args.model in driver.find_element(By.XPATH, row).text, "the node lists its model")
    step("the agent's node appeared as healthy, live, without a reload")
    shot(driver, args, "04-nodes.png")

    # A request through the agent becomes a job.
    secret_words = "purple-walrus-" + str(int(time.time()))
    status, text = api(args, "POST", "/v1/chat/completions", key,
                       {"model": args.model, "messages": [{"role": "user", "content": secret_words}]})
    check(status == 200, f"a chat completion through the agent succeeds: {status} {text[:200]}")
    driver.find_element(By.LINK_TEXT, "Jobs").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table tbody tr a.mono")))
    check("succeeded" in driver.page_source, "the job is listed as succeeded")
    shot(driver, args, "05-jobs.png")
    driver.find_element(By.CSS_SELECTOR, "table tbody tr a.mono").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, "ol.timeline")))
    page = driver.page_source
    check("Leased" in page and "Succeeded" in page and "browser-node" in page, "the job's story names its lease, node and result")
    check(secret_words not in page, "the job page never shows message contents")
    times = driver.find_elements(By.CSS_SELECTOR, "time[datetime]")
    check(len(times) > 0 and all("UTC" not in element.text for element in times), "times are shown in the viewer's zone")
    shot(driver, args, "06-job.png")
    step("opened the job: its story, no message contents, local times")

    # Usage: the key and model, and the CSV.
    driver.find_element(By.LINK_TEXT, "Usage").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "usage-daily")))
    page = driver.page_source
    check("browser-team" in page and args.model in page, "usage lists the key and the model")
    csv = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.querySelector('a[download]').href, {credentials: 'same-origin'}).then(r => r.text()).then(done, e => done('error ' + e));")
    check(csv.startswith("day,key_id,key_name,model,requests") and "browser-team" in csv, f"the CSV has the usage: {csv[:200]}")
    shot(driver, args, "07-usage.png")
    step("usage by key and model, with its CSV")

    driver.find_element(By.LINK_TEXT, "Overview").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "overview-live")))
    check(driver.find_element(By.CSS_SELECTOR, ".tiles .tile .value").text != "0", "the overview counts the requests")
    shot(driver, args, "08-overview.png")

    # Revoke the key, after the confirmation dialog.
    driver.find_element(By.LINK_TEXT, "Keys").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "keys-live")))
    driver.find_element(By.XPATH, "//tr[.//strong[text()='browser-team']]//button[text()='Revoke']").click()
    alert = wait(driver).until(EC.alert_is_present())
    check("browser-team" in alert.text, "the confirmation names the key")
    alert.accept()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".notice")))
    check("The key was revoked" in driver.page_source, "the page says the key was revoked")
    check("No keys yet" in driver.page_source, "the revoked key is gone from the list")
    status, _ = api(args, "POST", "/v1/chat/completions", key, {"model": args.model, "messages": [{"role": "user", "content": "hi"}]})
    check(status == 401, f"the revoked key is refused: {status}")
    shot(driver, args, "09-keys-revoked.png")
    step("revoked the key after confirming; it is refused")

    # A phone-width view of the nodes page.
    driver.set_window_size(390, 844)
    driver.get(base + "/nodes")
    wait(driver).until(EC.presence_of_element_located((By.ID, "nodes-live")))
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 1, f"the nodes page fits a phone's width (overflow {overflow}px)")
    driver.save_screenshot(os.path.join(args.screenshots, "10-nodes-phone.png"))
    step("screenshot 10-nodes-phone.png")
    driver.set_window_size(1280, 800)

    # Sign out: the session is gone.
    driver.get(base)
    wait(driver).until(EC.presence_of_element_located((By.ID, "overview-live")))
    driver.find_element(By.CSS_SELECTOR, "form.sign-out button").click()
    wait(driver).until(EC.url_contains("/console/sign-in"))
    driver.get(base + "/keys")
    wait(driver).until(EC.url_contains("/console/sign-in"))
    step("signed out; pages lead to the sign-in form again")
    return agent


if __name__ == "__main__":
    main()
    print("PASS", flush=True)
