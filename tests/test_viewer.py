"""The decode viewer in a real browser: headless Chromium opens the HTML file, the slider is clicked
and dragged like a mouse does, and what the page draws (the pixels of each grid, its printed digits
and their colour, its red frames, the slider's label, the legend) is compared with the decoded grids."""
import shutil

import numpy as np
import pytest

from air_interp.data import load_dataset
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.probes.decode import decode, sub_step_label, write_viewer
from air_interp.probes.render import (MAX_PRINTED_SIDE, TEXT_COLOUR, WRONG_COLOUR, printed_characters, token_colours,
                                      token_legend, wrong_cells)
from conftest import sudoku_test_puzzles, tiny_model

BROWSER, DRIVER = shutil.which("chromium") or shutil.which("google-chrome"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (BROWSER and DRIVER), reason="needs Chromium and its driver (Debian: apt-get install chromium chromium-driver)")]

# What each grid of the page shows, read from the page itself: the colour at the centre of every cell
# of the heat map's image, the printed characters with their colour, and the cells with a red frame.
READ_PANELS = """
const [side, wrongColour, done] = arguments;
const hex = rgb => "#" + Array.from(rgb).slice(0, 3).map(v => Number(v).toString(16).padStart(2, "0")).join("");
const colour = css => hex(css.match(/\\d+/g));
const centre = el => { const b = el.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; };
async function panel(subplot) {
  const image = subplot.querySelector(".heatmaplayer image");
  const box = image.getBoundingClientRect();
  const cell = ([x, y]) => Math.floor((y - box.y) / box.height * side) * side + Math.floor((x - box.x) / box.width * side);
  const picture = new Image();
  await new Promise(loaded => { picture.onload = loaded; picture.src = image.getAttribute("href"); });
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [picture.naturalWidth, picture.naturalHeight];
  const context = canvas.getContext("2d");
  context.drawImage(picture, 0, 0);
  const colours = [];
  for (let r = 0; r < side; r++) for (let c = 0; c < side; c++)
    colours.push(hex(context.getImageData(Math.floor((c + 0.5) / side * canvas.width),
                                          Math.floor((r + 0.5) / side * canvas.height), 1, 1).data));
  const texts = {};
  for (const t of subplot.querySelectorAll(".textpoint text"))
    texts[cell(centre(t))] = [t.textContent, colour(getComputedStyle(t).fill)];
  const framed = [...subplot.querySelectorAll("path.point")]
    .filter(p => colour(getComputedStyle(p).stroke) === wrongColour).map(p => cell(centre(p))).sort((a, b) => a - b);
  return {colours, texts, framed};
}
(async () => {
  const panels = [];
  for (const subplot of document.querySelectorAll(".subplot")) panels.push(await panel(subplot));
  done(panels);
})();
"""
# Counts finished animations and remembers the frame each one ended on.
WATCH_FRAMES = """
const gd = document.querySelector(".plotly-graph-div");
window.shownFrame = null;
gd.on("plotly_animatingframe", event => { window.pendingFrame = event.name; });
gd.on("plotly_animated", () => { window.shownFrame = window.pendingFrame; });
"""


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def expected_panel(task, grid, labels=None) -> dict:
    """What a grid should look like: the PNG's colours, digits (red where wrong) and red frames."""
    wrong = np.zeros(grid.shape, bool) if labels is None else wrong_cells(task, grid, labels)
    chars = printed_characters(task)[grid] if task.side <= MAX_PRINTED_SIDE else np.full(grid.shape, "")
    return {"colours": [token_colours(task)[t] for t in grid],
            "texts": {str(c): [chars[c], WRONG_COLOUR if wrong[c] else TEXT_COLOUR] for c in np.flatnonzero(chars != "")},
            "framed": np.flatnonzero(wrong).tolist()}


def check_shown(driver, result, puzzle: int, index: int) -> None:
    """The slider says sub-step ``index`` and the four grids are the givens, the solution and the decoded states."""
    from selenium.webdriver.common.by import By

    task, width = result.task, len(result.schedule)
    label = driver.find_element(By.CSS_SELECTOR, ".slider-group > text.slider-label").text
    assert label == "after " + sub_step_label(index // width, index % width, result.schedule[index % width])
    shown = driver.execute_async_script(READ_PANELS, task.side, WRONG_COLOUR)
    labels = result.labels[puzzle]
    assert shown[0] == expected_panel(task, result.inputs[puzzle])
    assert shown[1] == expected_panel(task, labels)
    for s in range(2):
        assert shown[2 + s] == expected_panel(task, result.grids[puzzle, index, s], labels)


def move_and_check(driver, result, puzzle: int, index: int, drag: bool) -> None:
    """Click the slider's rail at sub-step ``index`` (or drag its grip there) and check the page."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def centre_x(element) -> float:
        return element.rect["x"] + element.rect["width"] / 2

    tick = driver.find_elements(By.CSS_SELECTOR, ".slider-tick-rect")[index]
    actions = ActionChains(driver)
    if drag:
        grip = driver.find_element(By.CSS_SELECTOR, ".slider-grip-rect")
        actions.click_and_hold(grip).move_by_offset(round(centre_x(tick) - centre_x(grip)), 0).release()
    else:
        rail = driver.find_element(By.CSS_SELECTOR, ".slider-rail-touch-rect")
        actions.move_to_element_with_offset(rail, round(centre_x(tick) - centre_x(rail)), 0).click()
    actions.perform()
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return window.shownFrame") == str(index))
    check_shown(driver, result, puzzle, index)


def open_viewer(driver, path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".heatmaplayer image"))
    driver.execute_script(WATCH_FRAMES)


@pytest.mark.parametrize("task", ["sudoku", "maze8"])
def test_viewer_shows_givens_solution_and_states_as_the_slider_moves(browser, task, tmp_path):
    from selenium.webdriver.common.by import By

    if task == "sudoku":
        inputs, labels = sudoku_test_puzzles(2)
    else:
        split = load_dataset(DEFAULT_DATASETS[task]).split("test")
        inputs, labels = split.inputs[:2], split.labels[:2]
    result = decode(tiny_model(task=task, halt_max_steps=2), inputs, labels, progress=False)
    assert result.grids[1].shape[0] == 12 and result.schedule == ("L", "L", "H", "L", "L", "H")
    open_viewer(browser, write_viewer(result, 1, tmp_path / "viewer"))
    check_shown(browser, result, 1, 0)  # the first frame is labelled as what it is
    move_and_check(browser, result, 1, 8, drag=False)
    move_and_check(browser, result, 1, 11, drag=True)
    move_and_check(browser, result, 1, 1, drag=False)
    legend = [element.text for element in browser.find_elements(By.CSS_SELECTOR, ".legendtext")]
    assert legend == [h.get_label() for h in token_legend(result.task)] + ["red frame: not the solution's"]
    frames = sum(len(expected_panel(result.task, result.grids[1, g, s], labels[1])["framed"])
                 for g in range(12) for s in range(2))
    assert frames > 0  # the tiny model gets cells wrong, so the red frames were seen, not only their absence
