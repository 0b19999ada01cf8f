"""The search page in a real browser: Debian's chromium, headless, driven by Selenium through Debian's
chromium-driver, against the demo index (`vidx demo`: sample videos, the shipped demo model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from http_server import served
from jobs.demo import demo
from jobs.load import load
from jobs.server.app import create_app
from jobs.texts import texts

# Debian's packages (.ci/run installs them); given explicitly so Selenium Manager never downloads one.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
QUERY = "a red circle moves to the left"
DIRECTION_PHRASES = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
MOVES = ["something moves to the left", "something moves to the right", "something moves up", "something moves down"]


@pytest.fixture(scope="module")
def browser(monkeypatch_module):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"chromium not found ({', '.join(missing)}): apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch_module.setenv("SE_OFFLINE", "true")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory, local_ray):
    """(page URL, the demo's manifest rows, its directory): `vidx demo` built into a temporary
    directory, served by uvicorn on a free local port in this process (which owns the milvus-lite
    database)."""
    work = tmp_path_factory.mktemp("demo")
    demo(out=str(work))
    (work / "moves.txt").write_text("\n".join(MOVES) + "\n")
    texts(str(work / "moves.txt"), str(work / "index"))
    load(str(work / "index"), str(work / "vidx.db"))
    manifest = [json.loads(line) for line in (work / "samples" / "manifest.jsonl").read_text().splitlines()]
    with served(create_app(str(work / "vidx.db"))) as url:
        yield f"{url}/", manifest, work


def test_a_text_query_shows_the_red_circle_moving_left_first(browser, demo_site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, manifest, _ = demo_site
    [wanted] = [row["video_id"] for row in manifest
                if (row["colour"], row["shape"], row["direction"]) == ("red", "circle", "left")]
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: "segments indexed" in b.find_element(By.ID, "library").text)
    browser.find_element(By.ID, "text").send_keys(QUERY)
    browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results .hit"))
    first = browser.find_element(By.CSS_SELECTOR, "#results .hit")
    assert first.find_element(By.CLASS_NAME, "video-id").text == wanted
    metadata = first.find_element(By.CLASS_NAME, "metadata").text
    assert all(part in metadata for part in ("colour: red", "shape: circle", "direction: left")), metadata
    thumbnail = first.find_element(By.TAG_NAME, "img")
    wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", thumbnail))
    shown = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .video-id")}
    assert len(shown) == len(browser.find_elements(By.CSS_SELECTOR, "#results .hit"))  # each video once
    screenshot = tmp_path / "page.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot of the page after the query: {screenshot}")

    first.click()  # plays the video from the start of its best segment
    video = browser.find_element(By.ID, "video")
    wait.until(lambda b: b.execute_script("return arguments[0].readyState >= 1", video))
    assert video.get_attribute("src").endswith(f"/videos/{wanted}#t=0")
    assert browser.find_element(By.ID, "player").get_attribute("open") is not None
    browser.save_screenshot(str(tmp_path / "player.png"))


def test_a_corpus_describes_the_video_played(browser, demo_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, manifest, _ = demo_site
    direction = {row["video_id"]: row["direction"] for row in manifest}
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#target option[value=moves]"))
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "text").send_keys("a blue square moves up")  # text -> the corpus' texts
    Select(browser.find_element(By.ID, "target")).select_by_value("moves")
    browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#captions li")) == len(MOVES))
    assert {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#captions .caption")} == set(MOVES)

    Select(browser.find_element(By.ID, "target")).select_by_value("videos")
    browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results .hit"))
    Select(browser.find_element(By.ID, "target")).select_by_value("moves")  # describe with the corpus
    first = browser.find_element(By.CSS_SELECTOR, "#results .hit")
    video_id = first.find_element(By.CLASS_NAME, "video-id").text
    first.click()
    browser.find_element(By.ID, "describe").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#video-captions .caption"))
    described = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#video-captions .caption")]
    assert set(described) == set(MOVES)  # the whole corpus, best first: k is 5, it holds 4
    assert described[0].endswith(DIRECTION_PHRASES[direction[video_id]])


def most_alike_videos(index: Path) -> tuple[str, str, float]:
    """The two demo videos whose vectors score highest together, and that score."""
    import numpy as np
    import pyarrow.dataset as ds

    rows = ds.dataset(str(index / "videos")).to_table(columns=["video_id", "embedding", "status"])
    rows = rows.filter(rows["status"].to_numpy(zero_copy_only=False) == "ok")
    vectors = np.stack(rows["embedding"].to_numpy(zero_copy_only=False))
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    ids = rows["video_id"].to_pylist()
    return ids[i], ids[j], float(scores[i, j])


def test_the_player_lists_the_near_duplicates_of_the_video_played(browser, demo_site):
    """After `vidx duplicates` and a load, playing a video lists the other videos of its group."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from jobs.duplicates import duplicates

    url, _, work = demo_site
    first, second, score = most_alike_videos(work / "index")
    duplicates(str(work / "index"), threshold=score - 1e-4, method="exact")
    load(str(work / "index"), str(work / "vidx.db"))  # the groups, served as duplicate_group
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: "segments indexed" in b.find_element(By.ID, "library").text)
    Select(browser.find_element(By.ID, "target")).select_by_value("videos")
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "text").send_keys(QUERY)
    browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results .hit"))
    [card] = [hit for hit in browser.find_elements(By.CSS_SELECTOR, "#results .hit")
              if hit.find_element(By.CLASS_NAME, "video-id").text == first]
    card.click()
    wait.until(lambda b: b.find_element(By.ID, "duplicates").is_displayed())
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#duplicate-videos li")] == [second]
