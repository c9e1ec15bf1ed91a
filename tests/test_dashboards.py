"""Latent dashboards: the data against independent computations, and the page in headless Chromium."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import torch

from helpers import from_pretrained
from helpers.analysis.dashboards import (
    Example,
    LatentDashboard,
    _as_json,
    gather_dashboards,
    logit_effects,
    random_shared,
    render_html,
    save_html,
    top_base_only,
    top_chat_only,
)
from helpers.analysis.latents import encode_tokens
from helpers.analysis.norms import latent_table
from helpers.training.recipes import token_source_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")


@pytest.fixture(scope="module")
def release():
    return from_pretrained("toy-l3").eval()


@pytest.fixture(scope="module")
def table(release):
    return latent_table(release)


@pytest.fixture(scope="module")
def batches(toy_pair):
    source = token_source_for(toy_pair, seq_len=64, seed=9)
    return [source.next_batch(16) for _ in range(4)]


@pytest.fixture(scope="module")
def dashboards(toy_pair, release, table, batches):
    latents = top_chat_only(table, 2) + top_base_only(table, 1) + random_shared(table, 2)
    return gather_dashboards(toy_pair, release, batches, latents, table=table, progress=False)


def test_data_matches_a_direct_computation(toy_pair, release, batches, dashboards):
    acts = torch.cat([encode_tokens(toy_pair, release, b) for b in batches])  # [rows, seq, d_hidden]
    for dashboard in dashboards:
        latent_acts = acts[..., dashboard.latent]
        assert dashboard.density == pytest.approx((latent_acts > 0).sum().item() / (acts.shape[0] * 63))
        assert dashboard.max_activation == pytest.approx(latent_acts.max().item(), rel=1e-5)
        assert sum(dashboard.histogram_counts) == (latent_acts > 0).sum().item()
        expected_top = latent_acts.flatten().topk(len(dashboard.top_examples)).values
        for example, value in zip(dashboard.top_examples, expected_top):
            # each window shows the latent's computed activation on every token; its focus is the example's value
            assert example.activations[example.focus] == pytest.approx(value.item(), abs=1e-3)
            row_acts = latent_acts[example.row]
            assert example.activations == pytest.approx(
                row_acts[max(1, example.position - 12):example.position + 5].tolist(), abs=1e-3)
        best = dashboard.top_examples[0]
        assert max(range(len(best.activations)), key=best.activations.__getitem__) == best.focus
        for label, group in dashboard.band_examples:
            low, high = (float(x.strip("%")) / 100 for x in label.split(" ")[0].split("–"))
            for example in group:
                value = example.activations[example.focus]
                assert low * dashboard.max_activation - 1e-3 <= value <= high * dashboard.max_activation + 1e-3


def test_logit_effects_match_the_unembedding(toy_pair, release):
    effects = logit_effects(toy_pair, release, latent=7, n=5)
    vector = release.decoder_vectors(normalized=False)[7, 1].detach()
    logits = vector @ toy_pair.chat.W_U
    assert [value for _, value in effects[1]["boosted"]] == pytest.approx(logits.topk(5).values.tolist(), rel=1e-4)
    assert [value for _, value in effects[1]["suppressed"]] == pytest.approx(
        (-(-logits).topk(5).values).tolist(), rel=1e-4)
    assert [e["model"] for e in effects] == ["base", "chat"]
    assert [e["name"] for e in effects] == list(toy_pair.names)


def test_bad_input(toy_pair, release, batches):
    with pytest.raises(ValueError, match="at least one latent"):
        gather_dashboards(toy_pair, release, batches, [], progress=False)
    with pytest.raises(ValueError, match="latent ids must lie"):
        gather_dashboards(toy_pair, release, batches, [99_999], progress=False)


def test_non_finite_activations_are_a_clear_error_not_a_blank_page(toy_pair, release, batches):
    import copy

    broken = copy.deepcopy(release)
    with torch.no_grad():
        broken.W_enc[:, :, 5] = float("nan")
    with pytest.raises(ValueError, match="latents \\[5\\] have NaN or infinite activations"):
        gather_dashboards(toy_pair, broken, batches[:1], [5, 6], progress=False)


def test_page_json_never_holds_nan():
    import json

    panel = hostile_dashboard()
    panel.info = {"delta_norm": float("nan"), "relative_norm": float("inf"), "frequency": torch.tensor(0.5)}
    text = _as_json([panel], "t", {})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["latents"][0]["info"] == {"delta_norm": None, "relative_norm": None, "frequency": 0.5}
    panel.top_examples[0].activations[0] = float("nan")
    with pytest.raises(ValueError, match="not JSON compliant"):
        render_html([panel])


HOSTILE = "<script>window.__injected = 1</script>"


def hostile_dashboard() -> LatentDashboard:
    """A panel whose token and logit strings try to inject markup."""
    example = Example(tokens=["a", HOSTILE, "</script><b>x</b>", "<!--"], activations=[0.1, 2.0, 0.5, 0.0], focus=1,
                      row=0, position=3)
    return LatentDashboard(latent=3, density=0.01, max_activation=2.0, histogram_edges=[0.0, 1.0, 2.0],
                           histogram_counts=[3, 1], top_examples=[example], band_examples=[("0%–25% of max", [])],
                           logit_effects=[
                               {"model": "base", "name": HOSTILE, "boosted": [(HOSTILE, 1.0)],
                                "suppressed": [("x", -1.0)]},
                               {"model": "chat", "name": "chat <b>model</b>", "boosted": [("y", 1.0)],
                                "suppressed": [("z", -1.0)]}],
                           info={"class": "chat-only", "relative_norm": 0.97, "delta_norm": float("nan")})


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        needed = "headless Chromium (apt-get install chromium chromium-driver; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires {needed}")
        pytest.skip(f"no {needed}: the two browser tests are skipped here and required in CI")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER),
                              options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__errors = []; window.addEventListener('error', e => window.__errors.push(String(e.message)));")})
    yield driver
    driver.quit()


def open_page(browser, path: Path) -> None:
    browser.get(path.as_uri())
    assert browser.execute_script("return window.dashboardReady === true"), "the page script did not finish"
    errors = browser.execute_script("return window.__errors")
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [] and severe == [], (errors, severe)


def test_page_in_headless_chromium(browser, dashboards, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    path = save_html(dashboards, tmp_path / "dashboards.html", meta={"tokens": 4 * 16 * 63})
    open_page(browser, path)
    listed = [row.get_attribute("data-latent") for row in browser.find_elements(By.CSS_SELECTOR, "#index tbody tr")]
    assert sorted(map(int, listed)) == sorted(d.latent for d in dashboards)

    chosen = dashboards[0]
    browser.find_element(By.LINK_TEXT, str(chosen.latent)).click()
    panel = browser.find_element(By.ID, f"latent-{chosen.latent}")
    assert panel.is_displayed()
    assert len(panel.find_elements(By.CSS_SELECTOR, ".logit-block")) == 2
    assert len(panel.find_elements(By.CSS_SELECTOR, ".logit-block table.logits")) == 4
    examples = panel.find_elements(By.CSS_SELECTOR, ".top-examples .example")
    assert len(examples) == len(chosen.top_examples) > 0
    # the most strongly shaded token of the first example is the argmax of the computed activations
    alphas = browser.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.tok')).map(s => parseFloat(getComputedStyle(s)"
        ".backgroundColor.split(',')[3] || '1'))", examples[0])
    first = chosen.top_examples[0]
    assert max(range(len(alphas)), key=alphas.__getitem__) == first.activations.index(max(first.activations))
    assert panel.find_elements(By.CSS_SELECTOR, ".histogram .main-svg"), "the plotly histogram was drawn"

    browser.find_element(By.CSS_SELECTOR, "#index th[data-key='density']").click()
    densities = [d.density for d in sorted(dashboards, key=lambda d: d.density)]
    shown = [next(d for d in dashboards if d.latent == int(row.get_attribute("data-latent"))).density
             for row in browser.find_elements(By.CSS_SELECTOR, "#index tbody tr")]
    assert shown == densities, "clicking a header sorts the index"

    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L")
    low, high = image.getextrema()
    assert high - low > 100 and len(set(image.getdata())) > 20, "the screenshot is blank"


def test_text_from_the_data_is_escaped(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = render_html([hostile_dashboard()], title="<b>title</b>")
    assert page.count("<script>window.__injected") == 0, "the hostile string never appears as raw markup"
    path = tmp_path / "hostile.html"
    path.write_text(page, encoding="utf-8")
    open_page(browser, path)
    assert browser.execute_script("return window.__injected === undefined")
    assert browser.execute_script("return document.querySelectorAll('b').length") == 0
    tokens = [span.text for span in browser.find_elements(By.CSS_SELECTOR, "#latent-3 .tok")]
    assert HOSTILE in tokens and "</script><b>x</b>" in tokens
    assert browser.title == "<b>title</b>"


def test_a_pair_with_separate_tokenizers_shows_both_tokenizations(browser, tmp_path):
    from selenium.webdriver.common.by import By

    dashboard = hostile_dashboard()
    dashboard.top_examples[0].other = {"model": "other <i>model</i>", "tokens": ["a", "<b>b</b>", "c"], "focus": 1}
    open_page(browser, save_html([dashboard], tmp_path / "aligned.html"))
    browser.find_element(By.LINK_TEXT, "3").click()
    lines = browser.find_elements(By.CSS_SELECTOR, "#latent-3 .top-examples .example")
    assert len(lines) == 2, "the first model's tokens, then the other model's under them"
    other = lines[1].find_elements(By.CSS_SELECTOR, ".tok")
    assert [span.text for span in other] == ["a", "<b>b</b>", "c"]  # shown as text, never as markup
    assert "focus" in other[1].get_attribute("class") and "focus" not in other[0].get_attribute("class")
    assert lines[1].find_element(By.CSS_SELECTOR, ".max").text == "other <i>model</i>:"
