"""The MLflow UI and the run report in a real headless Chromium (Debian's chromium + chromedriver)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests_support import KILN, ROOT, descendants, free_port, outliving, store_client

pytestmark = pytest.mark.slow

SCREENSHOTS = ROOT / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SCREENSHOTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def ui(live_run):
    port = free_port()
    process = subprocess.Popen(
        [KILN, "ui", "--set", f"storage.root={live_run.root}", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # a server still starting may accept, then stall
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("kiln ui did not answer within 90 s")
    yield url
    members = [process.pid, *descendants(process.pid)]
    os.killpg(process.pid, signal.SIGTERM)  # the UI server and the workers it started
    process.wait(30)
    assert not outliving(members), "an MLflow UI process outlived the test"


def body_text_when(driver, predicate, timeout_s: float = 45) -> str:
    """The page's visible text once `predicate(text)` holds (the UI renders asynchronously)."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if predicate(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"page never showed what was expected; it showed:\n{text[:2000]}")


def test_experiment_page_lists_the_parent_and_its_trials(browser, ui, live_run):
    client = store_client(live_run.tracking_uri)
    experiment = client.get_experiment_by_name("kiln-test")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("kiln.kind") == "search")
    browser.get(f"{ui}/#/experiments/{experiment.experiment_id}/runs")
    body_text_when(browser, lambda t: f"{len(runs)} matching runs" in t and parent.info.run_name[:20] in t)
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-experiment.png"))


def test_comparing_two_trials_shows_their_metrics_and_params(browser, ui, live_run):
    client = store_client(live_run.tracking_uri)
    experiment = client.get_experiment_by_name("kiln-test")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kiln.kind") == "trial"]
    pair = trials[:2]
    query = urllib.parse.quote(json.dumps([r.info.run_id for r in pair]))
    browser.get(
        f"{ui}/#/compare-runs?runs={query}&experiments={urllib.parse.quote(json.dumps([experiment.experiment_id]))}"
    )
    text = body_text_when(browser, lambda t: all(r.info.run_name in t for r in pair) and "val_accuracy" in t)
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-compare.png"))
    assert "train.lr" in text and "epoch_time_s" in text


def test_run_report_shows_its_plots(browser, live_run):
    path = Path(re.search(r"^  report: (\S+\.html)$", live_run.output, re.M).group(1))
    browser.get(path.as_uri())
    loaded = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0 ? i.alt : null)"
    )
    browser.save_screenshot(str(SCREENSHOTS / "run-report.png"))
    assert loaded == ["trials", "search", "confusion", "roc", "stages"]
    assert "Kiln report" in browser.title


def test_the_printed_link_opens_the_trials_side_by_side_in_the_training_view(browser, ui, live_run):
    link = re.search(r"compare its (\d+) trials: (http://127\.0\.0\.1:5000/\S+)", live_run.output)
    assert link, "kiln run printed no comparison link"
    count, url = int(link.group(1)), link.group(2).replace("http://127.0.0.1:5000", ui)
    client = store_client(live_run.tracking_uri)
    experiment = client.get_experiment_by_name("kiln-test")
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kiln.kind") == "trial"]
    assert count == len(trials)
    browser.get(url)
    text = body_text_when(
        browser,
        lambda t: all(r.info.run_name in t for r in trials) and "val_accuracy" in t and "Parallel Coordinates" in t,
    )
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-compare-trials.png"))
    assert "train.lr" in text
    axes = browser.execute_script(  # the parallel-coordinates plot's axes: the searched parameter and tune.metric
        "return Array.from(document.querySelectorAll('text.axis-title')).map(e => e.textContent)"
    )
    assert axes == ["train.lr", "val_accuracy"], axes
    # The printed runs link opens the experiment's training runs, not the GenAI overview it lands on otherwise.
    runs_link = (
        re.search(r"runs: (http://127\.0\.0\.1:5000/\S+)", live_run.output)
        .group(1)
        .replace("http://127.0.0.1:5000", ui)
    )
    browser.get(runs_link)
    parent = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kiln.kind") == "search")
    body_text_when(browser, lambda t: parent.info.run_name[:20] in t and "matching runs" in t)
    assert "/overview" not in browser.current_url
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-experiment-runs.png"))
