"""The monitor's page in a real browser: Debian's headless chromium, driven by selenium through
/usr/bin/chromedriver (nothing is downloaded). `bash scripts/install-browser.sh` installs them (as
root; scripts/test.sh does). Without them these tests skip, except with CI=true, where they fail."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import wait_until
from monitor_client import Controller, running_controller

from experimaestro.monitor import serve_workspace

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Any:
    """One headless chromium for the module's tests."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing or shutil.which("chromium") is None:
        reason = (
            f"no headless browser ({', '.join(missing) or 'chromium'} missing): install it with "
            f"`bash scripts/install-browser.sh` (as root: apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # selenium must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1300,900", "--no-first-run"):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def controller(tmp_path: Path) -> Any:
    yield from running_controller(tmp_path)


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def click(driver: Any, selector: str) -> None:
    """Click the element (found again if a live update replaced it meanwhile)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt() -> bool:
        try:
            found = css(driver, selector)
            if found:
                found[0].click()
                return True
        except StaleElementReferenceException:
            pass
        return False

    wait_until(attempt, timeout=30, what=f"clicking {selector}")


def row_states(driver: Any) -> dict[str, str]:
    """``tag name -> state`` of the rows shown (read in the page at once: rows are replaced live)."""
    return driver.execute_script(
        """const out = {};
        for (const tr of document.querySelectorAll('#jobs tbody tr[data-key]')) {
          const tag = [...tr.querySelectorAll('.tag')].map(t => t.textContent)
                        .find(t => t.startsWith('name=')) || tr.dataset.key;
          out[tag.replace('name=', '') + (tr.children[1].textContent === 'downstream' ? '+' : '')]
            = tr.dataset.state;
        }
        return out;"""
    )


def until(predicate: Callable[[], Any], what: str) -> Any:
    return wait_until(predicate, timeout=30, what=what)


def test_a_job_appears_and_changes_state_live(browser: Any, tmp_path: Path) -> None:
    """`experimaestro monitor` shows a workspace in which a controller then runs jobs."""
    workdir = tmp_path / "ws"
    (workdir / "jobs").mkdir(parents=True)
    server = serve_workspace(workdir, port=0)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/#/xp/xp")
        until(lambda: css(browser, "#live") and css(browser, "#live")[0].text == "live", "live")
        browser.execute_script("window.notReloaded = true")
        controller = Controller(tmp_path, workdir=workdir, port=None)
        until(lambda: row_states(browser).get("a") == "running", "job a appearing, running")
        until(lambda: row_states(browser).get("b") == "failed", "job b failing")
        controller.open("a")
        until(lambda: row_states(browser).get("a") == "done", "job a done, live")
        until(lambda: row_states(browser).get("a+") == "done", "its downstream job done")
        counts = {b.get_attribute("data-state"): b.text for b in css(browser, "button.state-filter")}
        assert counts["failed"] == "failed 1"
        assert browser.execute_script("return window.notReloaded") is True  # pushed, not reloaded
        controller.finish()
    finally:
        server.stop()


def test_filters_search_and_a_jobs_log(browser: Any, controller: Controller) -> None:
    browser.get(controller.url + "/")  # the controller's page opens on its experiment
    until(lambda: row_states(browser).get("b") == "failed" and "d" in row_states(browser), "rows")
    click(browser, 'button.state-filter[data-state="failed"]')
    until(lambda: row_states(browser) == {"b": "failed"}, "only the failed job")
    click(browser, 'button.state-filter[data-state="failed"]')
    until(lambda: len(row_states(browser)) == 4, "every job again")
    css(browser, "#search")[0].send_keys("name=d")
    until(lambda: list(row_states(browser)) == ["d"], "the job found by the search box")
    # The job's page: its stdout, then a line it writes later, tailed live.
    d = controller.job("d")
    click(browser, f'tr[data-key="{d["key"]}"] td a')
    until(lambda: css(browser, "#log-stdout"), "the job page")
    click(browser, "#log-stdout")
    until(lambda: "hello d" in css(browser, "#log")[0].text, "its stdout")
    with open(Path(d_path := controller.workdir / "jobs" / d["key"]) / "gated.out", "a") as out:
        out.write("a line written later\n")
    until(lambda: "a line written later" in css(browser, "#log")[0].text, "the live tail")
    assert d_path.is_dir()
    # A failed job's page says why.
    b = controller.job("b")
    browser.get(f"{controller.url}/#/job/{b['key']}")
    until(lambda: css(browser, "#failure"), "the failure box")
    assert "fails on purpose" in css(browser, "#failure")[0].text
    until(lambda: "RuntimeError: b fails on purpose" in css(browser, "#log")[0].text, "stderr")
    controller.finish()


def test_kill_a_job_through_the_confirmation(browser: Any, controller: Controller) -> None:
    d = until(lambda: (j := controller.job("d")) and j["state"] == "running" and j["started"] and j,
              "d running")
    browser.get(f"{controller.url}/#/job/{d['key']}")
    click(browser, "#log-stdout")
    until(lambda: "hello d" in css(browser, "#log")[0].text, "its task running (test_monitor.py)")
    until(lambda: css(browser, "button.kill"), "the stop button")
    click(browser, "button.kill")
    until(lambda: css(browser, "#confirm")[0].is_displayed(), "the confirmation")
    click(browser, "#confirm-no")  # cancelled: nothing happens
    assert controller.job("d")["state"] == "running"
    click(browser, "button.kill")
    until(lambda: css(browser, "#confirm")[0].is_displayed(), "the confirmation, again")
    click(browser, "#confirm-yes")
    until(lambda: controller.job("d")["state"] == "failed", "d stopped")
    until(lambda: "cancelled" in css(browser, "#failure")[0].text if css(browser, "#failure") else False,
          "the page showing it cancelled")
    controller.finish()


def test_beyond_localhost_the_page_needs_the_token(browser: Any, tmp_path: Path) -> None:
    (tmp_path / "experiments" / "old").mkdir(parents=True)
    server = serve_workspace(tmp_path, port=0, host="0.0.0.0")
    try:
        base = f"http://127.0.0.1:{server.port}/"
        browser.get(base)
        assert "refused" in browser.find_element("tag name", "body").text
        browser.get(f"{base}?token={server.token}")
        until(lambda: browser.current_url == base, "the token moved from the URL into a cookie")
        until(lambda: css(browser, '#experiments tr[data-xp="old"]'), "the experiments")
        until(lambda: css(browser, "#live")[0].text == "live", "the live stream, with the cookie")
    finally:
        server.stop()


def test_a_reply_older_than_a_live_update_does_not_undo_it(browser: Any, controller: Controller) -> None:
    """A list reply computed before a job's change, arriving after the change was pushed, must not
    put the old state back (the page fetches again): the replies are held here to force it."""
    browser.get(controller.url + "/")
    until(lambda: row_states(browser).get("a") == "running", "job a running")
    browser.execute_script(
        """window.held = 0; window.release = null;
        const gate = new Promise((resolve) => { window.release = resolve; });
        const fetch0 = window.fetch;
        window.fetch = async (url, options) => {
          const response = await fetch0(url, options);
          if (String(url).startsWith('/api/jobs') && window.held !== null) { window.held++; await gate; }
          return response;
        };"""
    )
    css(browser, "#search")[0].send_keys("name=")  # every job still matches: a reload, held
    until(lambda: browser.execute_script("return window.held") >= 1, "a reply held")
    controller.open("a")
    until(lambda: row_states(browser).get("a") == "done", "a done, pushed")
    browser.execute_script("window.held = null; window.release()")  # the old reply arrives
    until(lambda: row_states(browser).get("a+") == "done", "the downstream job done")
    # Fetched again after the old reply (without that, a stays "running" for good).
    until(lambda: row_states(browser).get("a") == "done", "a done, after the old reply")
    controller.finish()


def test_a_job_page_reply_older_than_a_change_does_not_undo_it(browser: Any,
                                                               controller: Controller) -> None:
    """The job page: a reply computed while the job ran, arriving after it ended, must not show it
    running for good (the page fetches again), as for the list above."""
    from polling import poll

    a = until(lambda: (j := controller.job("a")) and j["state"] == "running" and j, "a running")
    browser.get(f"{controller.url}/#/job/{a['key']}")
    until(lambda: css(browser, "#log-stdout"), "the job page")
    browser.execute_script(
        """window.held = 0; window.requests = 0; window.pushed = false; window.release = null;
        const gate = new Promise((resolve) => { window.release = resolve; });
        const fetch0 = window.fetch;
        window.fetch = async (url, options) => {
          const details = /^\\/api\\/job\\/[^?]*$/.test(String(url)) && !String(url).includes('/log/');
          if (details) window.requests++;
          const response = await fetch0(url, options);
          // Only the first reply is held: later ones pass, as a quicker server would answer.
          if (details && window.held === 0) { window.held++; await gate; }
          return response;
        };
        const onJobs = current.onJobs;
        current.onJobs = (msg) => { window.pushed = true; onJobs(msg); };
        current.reload();  // as after a reconnection of the live stream: its reply is held"""
    )
    until(lambda: browser.execute_script("return window.held") >= 1, "a reply held")
    controller.open("a")
    until(lambda: browser.execute_script("return window.pushed"), "a's change pushed to the page")
    try:  # a page without the guard fetches again at once and shows "done" before the old reply
        poll(lambda: browser.execute_script("return window.requests") >= 2
             and "done" in badge_text(browser), timeout=1.0)
    except TimeoutError:
        pass  # the guarded page waits for the reply out: nothing to wait for
    browser.execute_script("window.release()")  # the old reply arrives, last
    until(lambda: "done" in badge_text(browser), "the page showing a done")
    controller.finish()


def badge_text(driver: Any) -> str:
    """The job page's state badge, read in the page at once (live updates replace it)."""
    return driver.execute_script(
        "const b = document.querySelector('.toolbar .badge'); return b ? b.textContent : '';")
