"""report.html: a size fit to mail, never left stale beside a newer report.md; and, from
hostile names (image files, a run name and a run's recorded prompts that hold HTML), a page
that, opened in headless Chromium, runs no script and shows no image but the figures the
report wrote."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from floodcache.data.synthetic import write_scenes
from floodcache.embed.config import EmbedConfig
from floodcache.evaluate.config import EvaluateConfig
from floodcache.pipeline.config import PipelineConfig
from floodcache.pipeline.run import run_pipeline
from floodcache.report import html
from floodcache.report.config import ReportConfig
from floodcache.report.report import run_report
from floodcache.train.config import TrainConfig
from tests.helpers import SIZES


def _report(folder, figure_name: str, image: Image.Image):
    (folder / "figures").mkdir()
    image.save(folder / "figures" / figure_name)
    report = folder / "report.md"
    report.write_text(f"# A report\n\n![a figure](figures/{figure_name})\n")
    return report


def test_report_html_holds_its_figures_shrunk_to_the_page(tmp_path):
    """A photo-like figure twice the page's width is inlined at the page's width, smaller;
    the figure file itself is untouched."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (1100, 2 * html.PAGE_WIDTH, 3), dtype=np.uint8)
    report = _report(tmp_path, "views.jpg", Image.fromarray(pixels))
    figure = tmp_path / "figures" / "views.jpg"
    before = figure.read_bytes()
    page = html.write_html(report, [figure]).read_text()
    (source,) = html.image_sources(page)
    inlined = base64.b64decode(source.split("base64,")[1])
    with Image.open(io.BytesIO(inlined)) as shown:
        assert shown.width == html.PAGE_WIDTH and shown.height == 550
    assert len(inlined) < len(before) / 2 and figure.read_bytes() == before


def test_a_report_without_html_removes_the_stale_page_but_not_a_foreign_file(tmp_path, caplog):
    report = _report(tmp_path, "plot.png", Image.new("RGB", (200, 100), "white"))
    page = html.write_html(report, [tmp_path / "figures" / "plot.png"])
    assert page.is_file()
    html.remove_stale_page(report)  # the next report, without --html
    assert not page.exists()
    page.write_text("<html><title>my own notes</title></html>")
    with caplog.at_level(logging.WARNING):
        html.remove_stale_page(report)
    assert page.read_text().startswith("<html><title>my own")  # never a user's file
    assert "not a floodcache report" in caplog.text


HOSTILE_IMAGES = ("{}<img src=x onerror=alert(1)>", "{}<svg onload=alert(2)>")
HOSTILE_RUN = "x<img src=y onerror=alert(99)>"
SECRET = b"\x89PNG\r\n\x1a\nnot for the report"


def _hostile_data(root: Path) -> Path:
    """The tiny data set, every image (and its mask) renamed to HTML."""
    write_scenes(root, len(SIZES), SIZES)
    for index in range(len(SIZES)):
        name = HOSTILE_IMAGES[index % 2].format(index)
        (root / "Image" / f"{index}.jpg").rename(root / "Image" / f"{name}.jpg")
        (root / "Mask" / f"{index}.png").rename(root / "Mask" / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """`run --name HOSTILE_RUN --html` on hostile image names, then `report --html` again
    after a prompt name in the run's config.json was edited to inline a local file."""
    tmp = tmp_path_factory.mktemp("hostile")
    secret = tmp / "secret.png"
    secret.write_bytes(SECRET)
    data = _hostile_data(tmp / "data")
    config = PipelineConfig(
        embed=EmbedConfig(data_dir=data, random_weights=True, model_type="vit_tiny", augment=0),
        train=TrainConfig(train_prompts="box,none", epochs=1),
        report=ReportConfig(evaluate=EvaluateConfig(eval_prompts="box,none"), html=True),
        out_dir=tmp / "out",
        name=HOSTILE_RUN,
        progress=False,
    )
    first = run_pipeline(config)
    pages = [first.report.html.read_text()]
    record_file = first.run / "config.json"
    record = json.loads(record_file.read_text())
    record["prompts"][f'<img src="{secret}">'] = {"oracle": False, "multimask": False}
    record["prompts"]["<script>alert(3)</script>"] = {"oracle": False, "multimask": False}
    record_file.write_text(json.dumps(record))
    again = run_report(replace(config.report, evaluate=None))
    pages.append(again.html.read_text())
    copies = [tmp / f"page{index}.html" for index in range(len(pages))]
    for copy, page in zip(copies, pages, strict=True):  # each page as it was written
        copy.write_text(page)
    return first.report.report.read_text(), pages, copies


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


@pytest.mark.slow  # a whole `run` and a browser
def test_hostile_names_run_no_script_in_the_browser(hostile_report):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    text, pages, copies = hostile_report
    assert "\\<img src\\=x onerror\\=alert\\(1\\)\\>" in text  # an image's name, escaped
    browser = _browser()
    try:
        for copy in copies:
            browser.get(copy.as_uri())
            browser.execute_script("return document.readyState")
            with pytest.raises(NoAlertPresentException):
                browser.switch_to.alert.text  # noqa: B018 -- raises unless an alert is open
            assert browser.find_elements(By.TAG_NAME, "script") == []
            images = browser.find_elements(By.TAG_NAME, "img")
            assert images, "the figures are shown"
            for image in images:
                assert image.get_attribute("onerror") is None
                assert image.get_attribute("src").startswith("data:image/")
            page_text = browser.find_element(By.TAG_NAME, "body").text
            assert "x<img src=y onerror=alert(99)>" in page_text  # the run's name, as text
    finally:
        browser.quit()


@pytest.mark.slow  # a whole `run` and a browser
def test_a_recorded_prompt_name_inlines_no_local_file(hostile_report):
    _, pages, _ = hostile_report
    secret = base64.b64encode(SECRET).decode("ascii")
    assert all(secret not in page for page in pages)
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in pages[1]
