"""`factory report`: the text summary and the one-file HTML page over a real store (two teachers:
the scripted one from test_filter and the real OpenAI-compatible client against the fake server),
three filter versions, and a headless Chromium that renders the page."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from factory.build import build_dataset
from factory.cli import app
from factory.config import load_config
from factory.filter import run_filter
from factory.report import html_report, text_report
from factory.store import Store
from support.fake_openai import FakeOpenAI
from support.teachers import CODE, GSM8K, ScriptedTeacher

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-report-test-0123456789abcdef"  # the API teacher's key: must never reach the report
HEADINGS = ("Filter funnel", "Verified rate by source and teacher", "Lengths", "Diversity across versions",
            "Tokens and cost per teacher", "Seeds")
VERSION_OVERRIDES = ([], ["filter.per_seed=2"], ["filter.per_seed=2", "filter.math.max_reasoning_words=30"])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A store with 8 seeds x 4 samples x 2 teachers, one 401 whose message echoes the key, and 3 versions."""
    root = tmp_path_factory.mktemp("report")
    for sub in ("prompts", "filters", "data/benchmarks"):
        shutil.copytree(ROOT / sub, root / sub)
    rows = list(GSM8K) + [{"question": "[[echo_auth]] How many legs do 2 cats have?", "answer": "#### 8"}]
    (root / "data" / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "data" / "code.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CODE))
    with FakeOpenAI(reasoning=True) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("REPORT_TEST_KEY", SECRET)
        (root / "factory.yaml").write_text(f"""
sources:
  - {{name: gsm8k, path: data/seeds.jsonl, preset: gsm8k}}
  - {{name: code, path: data/code.jsonl, preset: humaneval}}
teachers:
  - {{name: scripted, backend: openai, model: scripted-model}}
  - {{name: api, backend: openai, model: fake-model, base_url: "{server.base_url}", api_key_env: REPORT_TEST_KEY,
     max_retries: 0, price_in_per_mtok: 3.0, price_out_per_mtok: 15.0}}
generation: {{samples_per_seed: 4}}
filter: {{sandbox_wall_s: 5}}
""")
        cfg = load_config(root / "factory.yaml")
        build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": ScriptedTeacher()})
    for overrides in VERSION_OVERRIDES:
        run_filter(load_config(root / "factory.yaml", overrides), console=Console(quiet=True))
    return root


@pytest.fixture(scope="module")
def page(project) -> Path:
    """The latest version's page at its default place (written once: plotting costs a few CPU seconds)."""
    return html_report(load_config(project / "factory.yaml"))


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _assert_not_blank(png: bytes, what: str) -> None:
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width > 100 and image.height > 100, what
    assert max(ImageStat.Stat(image).stddev) > 10, f"{what} is a single colour"


@pytest.mark.slow
def test_html_page_is_one_file_with_every_section_and_plot(project, page):
    assert page == project / ".factory" / "report" / "v3.html"
    page = page.read_text()
    # self-contained: no reference leaves the page (only data: images and #anchors)
    refs = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), refs
    assert not re.search(r"https?://|<link|@import|url\(", page)
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    images = _images(page)
    assert len(images) == 5
    for n, png in enumerate(images):
        _assert_not_blank(png, f"plot {n}")
    # the numbers: both teachers and sources, the funnel reasons, a row per version in the trend
    for text in ("scripted", "api", "gsm8k", "code", "truncated", "too_long", "tests_failed", "reasoning words",
                 "p50", "fake-model"):
        assert text in page, text
    trend = page[page.index('id="diversity"'):page.index('id="cost"')]
    assert len(re.findall(r"<tr><td>\d+</td>", trend)) == 3
    assert SECRET not in page and "Incorrect API key provided: Bearer ***" in page  # the error, scrubbed
    with pytest.raises(RuntimeError, match=r"no version 9 \(versions: 1, 2, 3\)"):
        html_report(load_config(project / "factory.yaml"), 9)


@pytest.mark.slow
def test_text_report_shows_rates_lengths_cost_and_the_trend(project):
    cfg = load_config(project / "factory.yaml")
    console = Console(record=True, width=200)
    text_report(cfg, console)
    out = console.export_text()
    for text in ("filter funnel, version 3", "verified rate by source and teacher, version 3", "lengths, version 3",
                 "diversity across versions", "requests per teacher", "errors", "completion tokens", "$ per kept"):
        assert text in out, text
    verified = out[out.index("verified rate by source"):out.index("lengths, version")]
    for by, name in (("source", "gsm8k"), ("source", "code"), ("teacher", "scripted"), ("teacher", "api")):
        assert re.search(rf"{by}\s*│\s*{name}\s*│\s*\d+\s*│\s*\d+\s*│\s*\d+%", verified), (by, name)
    # the API teacher was priced: its cost is a number, the scripted one has none
    assert re.search(r"api\s*│\s*fake-model\s*│(\s*[\d,]+\s*│){8}\s*0\.\d{4}", out)
    assert SECRET not in out

    console = Console(record=True, width=200)
    text_report(cfg, console, version=1)
    assert "filter funnel, version 1" in console.export_text()


def test_a_store_without_versions_says_so(tmp_path):
    cfg = load_config(data={"sources": [{"name": "s", "path": "x.jsonl"}], "workdir": str(tmp_path)})
    Store(cfg.store_path).close()
    console = Console(record=True, width=120)
    text_report(cfg, console)
    assert "no filtered version yet" in console.export_text()
    with pytest.raises(RuntimeError, match="no filtered version yet"):
        html_report(cfg)


@pytest.mark.slow
def test_cli_report_prints_the_summary_and_writes_the_page(project):
    runner = CliRunner()
    result = runner.invoke(app, ["report", "-c", str(project / "factory.yaml"), "--version", "2",
                                 "--html", str(project / "cli.html")])
    assert result.exit_code == 0, result.output
    assert "filter funnel, version 2" in result.output and "HTML report ->" in result.output
    assert "factory report, version 2" in (project / "cli.html").read_text()
    result = runner.invoke(app, ["report", "-c", str(project / "factory.yaml"), "--version", "7"])
    assert result.exit_code == 2 and "no version 7 (versions: 1, 2, 3)" in result.output


def _chromium(chromium: str, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True, text=True, timeout=90)


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.skip("chromium not installed (apt-get install chromium): the rendered-page check needs a browser")
    return path


@pytest.mark.slow
def test_page_renders_in_headless_chromium(chromium, page, tmp_path):
    url = page.resolve().as_uri()
    dom = _chromium(chromium, "--dump-dom", url, tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's own script counts the plots the browser decoded (naturalWidth > 0)
    assert re.search(r'data-plots="5/5"', dom.stdout), re.findall(r"data-plots=\"[^\"]*\"", dom.stdout)
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in dom.stdout

    shot = tmp_path / "report.png"
    run = _chromium(chromium, f"--screenshot={shot}", "--window-size=1200,3000", "--hide-scrollbars", url, tmp=tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    _assert_not_blank(shot.read_bytes(), "screenshot")
