"""The dashboard in headless Chromium against a real `ifc serve`: live
updates without reload, the viewer's refusal, admin actions, screenshots."""
import os
import time
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.common.exceptions import (
    ElementNotInteractableException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ADMIN, VIEWER

WAIT = 30


def wait(driver, css: str, text: str = None):
    """The element at `css` (containing `text`, if given), once it shows. Pages
    redraw as events arrive, so the element is looked up afresh each time."""
    def shown(d):
        try:
            for element in d.find_elements(By.CSS_SELECTOR, css):
                if element.is_displayed() and (text is None or text in element.text):
                    return element
        except StaleElementReferenceException:
            pass
        return False
    try:
        return WebDriverWait(driver, WAIT).until(shown)
    except TimeoutException:
        driver.save_screenshot("/tmp/ifc-ui-failure.png")
        raise AssertionError(f"never saw {css!r} with {text!r}; page text: {driver.find_element(By.TAG_NAME, 'body').text[:2000]}")


def click(driver, css: str, typed: tuple = None) -> None:
    """Clicks `css` (after typing `typed` = (css, text)), again if a redraw
    replaced the element in between, or was laying it out (not interactable
    yet: seen once on the blocker's resolve form, just after an assignment
    redrew the card)."""
    for _ in range(20):
        try:
            if typed:
                field = wait(driver, typed[0])
                field.clear()
                field.send_keys(typed[1])
            wait(driver, css).click()
            return
        except (StaleElementReferenceException, ElementNotInteractableException):
            time.sleep(0.05)
            continue
    raise AssertionError(f"{css} kept being redrawn")


def shoot(driver, server, name: str) -> None:
    # One set of screenshots, from the embedded run.
    if server.backend != "embedded":
        return
    directory = Path(os.environ.get("IFC_UI_SCREENSHOTS", "screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(directory / f"{name}.png"))


def log_in(driver, token: str) -> None:
    field = wait(driver, "#token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, "#stream.live")


def register(server, swarm_id: str, capabilities):
    answer = server.admin.post("/v1/swarms", json={"swarm_id": swarm_id, "capabilities": capabilities})
    assert answer.status_code == 201, answer.text
    token = answer.json()["token"]
    return httpx.Client(base_url=server.url, timeout=10,
                        headers={"Authorization": f"Bearer {token}", "X-Ifc-Swarm": swarm_id})


def create_task(server, task_id: str, **extra):
    body = {"task_id": task_id, "task_type": "build", "required_capabilities": ["code"], **extra}
    answer = server.admin.post("/v1/tasks", json=body)
    assert answer.status_code == 201, answer.text


def test_the_dashboard_follows_the_swarm_live_and_refuses_the_viewer_an_action(server, browser):
    browser.get(server.url + "/")
    # The page is served with a strict policy (checked on the raw answer).
    head = httpx.get(server.url + "/")
    assert "default-src 'self'" in head.headers["content-security-policy"]
    assert "unsafe-inline" not in head.headers["content-security-policy"]
    assert head.headers["x-content-type-options"] == "nosniff"
    assert head.headers["etag"]

    log_in(browser, VIEWER)
    # A marker that a reload would wipe: every change below arrives live.
    browser.execute_script("window.notReloaded = true")
    wait(browser, "section[aria-label='Live swarms']", "No live swarms")

    alpha = register(server, "alpha", ["code"])
    wait(browser, "tr[data-swarm='alpha']", "alpha")

    # Tasks: the new task appears in the ready list, then its own page follows
    # it from ready to claimed to completed.
    click(browser, "#nav-tasks")
    wait(browser, "#filter-state")
    create_task(server, "t-live", metadata={"repo": "ifc"})
    wait(browser, "tr[data-task='t-live']", "t-live")
    shoot(browser, server, "tasks")
    click(browser, "tr[data-task='t-live'] a")
    wait(browser, "#task-state", "ready")

    claimed = alpha.post("/v1/tasks/t-live/claim", json={"swarm_id": "alpha"})
    assert claimed.json()["outcome"] == "claimed", claimed.text
    wait(browser, "#task-state", "claimed")
    wait(browser, "#deadline", "s")
    shoot(browser, server, "task")
    done = alpha.post("/v1/tasks/t-live/complete",
                      json={"swarm_id": "alpha", "token": claimed.json()["token"], "result": {"ok": True}})
    assert done.status_code == 200, done.text
    wait(browser, "#task-state", "completed")
    wait(browser, "section[aria-label='Witness chain']", "task_completed")
    wait(browser, "#chain-badge", "verified")

    # Blockers: alpha is stuck; beta could help. The viewer sees both, and is
    # refused when it tries to resolve.
    beta = register(server, "beta", ["code", "review"])
    raised = alpha.post("/v1/swarms/alpha/blockers", json={
        "type": "needs_review", "description": "the change needs a second pair of eyes",
        "severity": "high", "required_capabilities": ["review"], "task_id": "t-live"})
    assert raised.status_code == 201, raised.text
    blocker = raised.json()["blocker_id"]
    click(browser, "#nav-blockers")
    wait(browser, f"[data-blocker='{blocker}'] tr[data-candidate='beta']", "beta")
    click(browser, f"[data-blocker='{blocker}'] button[type='submit']", (f"#resolution-{blocker}", "reviewed"))
    refusal = wait(browser, "#flash", "admin token")
    assert "viewer token may only read" in refusal.text
    shoot(browser, server, "blockers")
    assert browser.execute_script("return window.notReloaded === true")

    # Overview with some history, at a desk and on a phone.
    click(browser, "#nav-overview")
    wait(browser, "td[data-state='completed']", "1")
    wait(browser, "section[aria-label='Open blockers']", "needs_review")
    wait(browser, "section[aria-label='Witness chains']", "verified")
    shoot(browser, server, "overview")
    browser.set_window_size(390, 844)
    shoot(browser, server, "phone")
    browser.set_window_size(1280, 900)
    assert browser.execute_script("return window.notReloaded === true")

    # The admin token may act: assign beta, then resolve.
    click(browser, "#logout")
    log_in(browser, ADMIN)
    click(browser, "#nav-blockers")
    wait(browser, f"[data-blocker='{blocker}'] tr[data-candidate='beta']", "beta")
    click(browser, "tr[data-candidate='beta'] button")
    wait(browser, "#flash", "Assigned beta")
    wait(browser, f"[data-blocker='{blocker}']", "Helpers assigned: beta")
    click(browser, f"[data-blocker='{blocker}'] button[type='submit']", (f"#resolution-{blocker}", "reviewed"))
    wait(browser, "#flash", "resolved")
    wait(browser, "#view", "No open blockers")
    assert server.admin.get(f"/v1/blockers/{blocker}").json()["state"] == "resolved"

    # Dead letters: a task out of attempts, retried from the page.
    create_task(server, "t-dead", max_attempts=1)
    claim = alpha.post("/v1/tasks/t-dead/claim", json={"swarm_id": "alpha"}).json()
    failed = alpha.post("/v1/tasks/t-dead/fail", json={"swarm_id": "alpha", "token": claim["token"], "error": "boom"})
    assert failed.json()["state"] == "dead", failed.text
    click(browser, "#nav-dead")
    wait(browser, "tr[data-task='t-dead']", "boom")
    click(browser, "tr[data-task='t-dead'] button")
    wait(browser, "#flash", "ready again")
    assert server.admin.get("/v1/tasks/t-dead").json()["state"] == "ready"
    beta.close()
    alpha.close()

    # No console errors (a CSP violation would be one).
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "/v1/" not in e["message"]]
    assert errors == [], errors


def test_a_server_restart_shows_as_a_cut_stream_and_recovers(server, browser):
    if server.backend != "embedded":
        return  # restarting etcd-backed nodes is the fault suite's business
    browser.get(server.url + "/")
    log_in(browser, VIEWER)
    browser.execute_script("window.notReloaded = true")
    register(server, "before-restart", ["code"]).close()
    wait(browser, "tr[data-swarm='before-restart']", "before-restart")
    server.restart()
    wait(browser, "#stream.cut", "cut")
    wait(browser, "#stream.live", "resumed")
    register(server, "after-restart", ["code"]).close()
    wait(browser, "tr[data-swarm='after-restart']", "after-restart")
    assert browser.execute_script("return window.notReloaded === true")
