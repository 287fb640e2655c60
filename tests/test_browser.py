"""The model's web pages in a real browser: Sliders and retrieval by example (issue 10).

Debian's ``chromium``, headless, driven by selenium through Debian's
``chromedriver`` (both given by path: selenium-manager never downloads a
browser or a driver), against the live service: the decode and retrieve
services, TAP and the static pages are the real ones.  Every page must load
without a console error and fetch nothing from another site.  Screenshots go
to ``var/screenshots/`` (git-ignored) for a person to look at.

The pages expose what they drew on ``window.harpsSliders`` and
``window.harpsRetrieve`` (request counters, the decoded flux, the uPlot
instance); the tests read those and the DOM, and check pixels on the canvas.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO, S1D, SERVER_URL, SHARED, pub_did, require

from harps_site import RD_ID

pytestmark = pytest.mark.server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGES = f"{SERVER_URL}/{RD_ID}/explore/static"
SHOTS = REPO / "var" / "screenshots"
GARBAGE = SHARED / "edge_cases" / "HARPS.2003-12-13T06_19_48.371_s1d_A.fits"
K = 10
#: Seconds a page may take for its first answer (a cold model, a 2-core machine).
SLOW = 90

#: Pixels of the decoded curve (#d00) on the canvas: some hundreds when it is drawn.
RED_PIXELS = """
const c = document.querySelector('#plot canvas');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4)
  if (d[i] > 180 && d[i + 1] < 90 && d[i + 2] < 90 && d[i + 3] > 100) n++;
return n;
"""


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module, logging the console."""
    require(CHROMIUM.exists() and CHROMEDRIVER.exists(),
            "chromium and chromium-driver missing (etc/dachsctl system installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        require(False, "selenium missing from the venv (etc/dachsctl venv installs it)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1400", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(executable_path=str(CHROMEDRIVER)),
                              options=opts)
    driver.set_script_timeout(SLOW)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _open(driver, page: str) -> None:
    driver.get_log("browser")  # forget what earlier pages logged
    driver.get(f"{PAGES}/{page}")


def _wait(driver, condition: str, timeout: float = SLOW):
    """Wait until the JavaScript expression ``condition`` is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: d.execute_script(f"return {condition};"),
        message=f"waited {timeout} s for {condition}")


def _wait_decoded(driver, responses: int = 0) -> None:
    """Wait for the Sliders page's next decoded spectrum; fail with the page's error box."""
    _wait(driver, "window.harpsSliders && !harpsSliders.busy && "
                  f"(harpsSliders.responses > {responses} || harpsSliders.failures > 0)")
    assert driver.execute_script("return harpsSliders.failures;") == 0, \
        driver.find_element("id", "error").text


def _console_errors(driver, allowed: str | None = None) -> list[str]:
    """SEVERE console entries (network failures included), except those containing ``allowed``."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not (allowed and allowed in e["message"])]


def _foreign_requests(driver) -> list[str]:
    """Everything the page fetched from another origin than the service's."""
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    return [n for n in names if not n.startswith(SERVER_URL + "/") and not n.startswith("data:")]


def _shot(driver, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _public_did(service) -> str:
    """A public, encoded, real (not synthetic) spectrum with the highest S/N."""
    rows = service.tap_rows(
        "SELECT TOP 1 l.ssa_pubdid FROM harps.latents AS l JOIN harps.data AS d "
        "ON d.ssa_pubdid = l.ssa_pubdid WHERE l.encode_flags = 0 "
        "ORDER BY d.synthetic, d.ssa_snr DESC")
    require(bool(rows), "no encoded public spectrum: publish a model (make demo)")
    return rows[0]["ssa_pubdid"]


def _informative_columns(service) -> list[str]:
    rows = service.tap_rows("SELECT column_name FROM tap_schema.columns "
                            "WHERE table_name = 'harps.latents' AND column_name LIKE 'z%'")
    return sorted(r["column_name"] for r in rows)


def test_the_sliders_page_draws_the_median_spectrum_without_console_errors(service, browser):
    zcols = _informative_columns(service)
    require(bool(zcols), "no model published (make demo)")
    model = service.tap_rows("SELECT model_id FROM harps.models WHERE is_current = 1")[0]
    _open(browser, "sliders.html")
    _wait_decoded(browser)
    sliders = browser.find_elements("css selector", "#dims input[type=range]")
    assert len(sliders) == len(zcols)
    labels = [e.text for e in browser.find_elements("css selector", "#dims label")]
    assert labels[0].startswith("z1 (") and labels[0].endswith(")"), labels  # what it follows
    assert model["model_id"] in browser.find_element("id", "status").text
    assert "gavo_latentdist(" in browser.find_element("id", "adql").text
    n = browser.execute_script("return harpsSliders.lastDecoded.length;")
    assert n > 1000 and n == browser.execute_script("return harpsSliders.plot.data[0].length;")
    assert browser.execute_script(RED_PIXELS) > 200, "the decoded spectrum is not drawn"
    _shot(browser, "sliders-median")
    assert _console_errors(browser) == []
    assert _foreign_requests(browser) == []


def test_moving_a_slider_redraws_the_decoded_spectrum_and_keeps_the_zoom(service, browser):
    did = _public_did(service)
    _open(browser, f"sliders.html?ID={did}")
    _wait_decoded(browser)
    observed = browser.execute_script(
        "return harpsSliders.plot.data[1].filter(v => v != null).length;")
    assert observed > 1000, "the spectrum's own flux is not drawn under the decoded one"
    # zoom to 40 Angstrom around H alpha, then move z1 far from the spectrum's own value
    browser.execute_script("""
        // the decode requests that really went over the network (resource timing):
        // slider moves go to the model server's raw decoder
        window.decodeCalls = () => performance.getEntriesByType('resource')
            .filter(e => e.name.includes('/harps/model/decode'));
        window.before = Array.from(harpsSliders.lastDecoded);
        window.counts = [harpsSliders.requests, harpsSliders.responses, decodeCalls().length];
        harpsSliders.plot.setScale('x', {min: 6543, max: 6583});
        const s = document.getElementById('s0'), lo = +s.min, hi = +s.max;
        s.value = +s.value - lo > (hi - lo) / 2 ? lo + 0.05 * (hi - lo) : hi - 0.05 * (hi - lo);
        s.dispatchEvent(new Event('input', {bubbles: true}));
        s.dispatchEvent(new Event('change', {bubbles: true}));""")
    _wait_decoded(browser, browser.execute_script("return counts[1];"))
    got = browser.execute_script("""
        const a = harpsSliders.lastDecoded, b = window.before;
        let diff = 0;
        for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
        const calls = decodeCalls();
        return {same_length: a.length === b.length, diff,
                calls: calls.length - counts[2], last: calls[calls.length - 1].name,
                x: [harpsSliders.plot.scales.x.min, harpsSliders.plot.scales.x.max]};""")
    assert got["same_length"] and got["diff"] > 1e-3, got
    assert got["calls"] >= 1 and "latent=" in got["last"], got
    assert got["x"] == [6543, 6583], "redrawing lost the zoom"
    assert browser.execute_script(RED_PIXELS) > 50
    _shot(browser, "sliders-moved-zoomed")
    # the reset button goes back to the spectrum's own coordinates and decoding
    browser.execute_script("window.counts = [harpsSliders.responses]; window.moved = "
                           "Array.from(harpsSliders.lastDecoded);")
    browser.find_element("id", "reset").click()
    _wait_decoded(browser, browser.execute_script("return counts[0];"))
    back = browser.execute_script("""
        const a = harpsSliders.lastDecoded, b = window.before, m = window.moved;
        let d0 = 0, d1 = 0;
        for (let i = 0; i < a.length; i++) {
          d0 = Math.max(d0, Math.abs(a[i] - b[i])); d1 = Math.max(d1, Math.abs(a[i] - m[i])); }
        return [d0, d1];""")
    assert back[0] < 1e-3 < back[1], back
    assert _console_errors(browser) == []
    assert _foreign_requests(browser) == []


def test_the_sliders_plot_stays_responsive_at_the_full_grid(service, browser):
    """312,501 pixels (the full preset's 0.01 A grid), three curves: a redraw that
    keeps the zoom, and a zoom, each well under a second (uPlot: tens of ms)."""
    _open(browser, "sliders.html")
    _wait_decoded(browser)
    times = browser.execute_async_script("""
        const done = arguments[arguments.length - 1], u = harpsSliders.plot, n = 312501;
        const wl = new Float64Array(n), a = new Float64Array(n), b = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          wl[i] = 3781 + 0.01 * i; a[i] = 1 - 0.6 * Math.exp(-(((i % 3000) - 1500) ** 2) / 40);
          b[i] = a[i] * (1 + 0.05 * Math.sin(i / 5000)); }
        const frame = () => new Promise(r => requestAnimationFrame(() => r()));
        (async () => {
          const t = [];
          u.setData([wl, a, a, b]); await frame();
          u.setScale('x', {min: 4000, max: 6800}); await frame();
          for (const f of [1.01, 0.99, 1.02]) {
            const t0 = performance.now();
            HARPS.setDataKeepZoom(u, [wl, a, a, b.map(v => v * f)]); await frame();
            t.push(performance.now() - t0); }
          const t0 = performance.now();
          u.setScale('x', {min: 6550, max: 6575}); await frame();
          t.push(performance.now() - t0);
          done({t, x: [u.scales.x.min, u.scales.x.max]});
        })();""")
    assert times["x"] == [6550, 6575]
    assert max(times["t"]) < 1000, times
    print("full-grid redraws and zoom (ms):", [round(t) for t in times["t"]])
    _shot(browser, "sliders-full-grid")
    assert _console_errors(browser) == []


def _wait_retrieved(driver, after: int = 0) -> dict:
    _wait(driver, "window.harpsRetrieve && !harpsRetrieve.busy && "
                  f"harpsRetrieve.responses + harpsRetrieve.failures > {after}")
    return driver.execute_script("""
        const r = harpsRetrieve, p = r.plot;
        return {failures: r.failures, error: document.getElementById('error').textContent,
                error_shown: !document.getElementById('error').hidden,
                series: r.seriesCount, plotted: p ? p.series.length - 1 : 0,
                drawn: p ? p.data.slice(1).map(s => s.filter(v => v != null).length) : [],
                table_rows: document.querySelectorAll('#results tr').length - 1,
                rows: (r.lastRows || []).map(x => ({rank: x.rank, did: x.ssa_pubdid,
                    target: x.ssa_targname, distance: x.latent_distance, datalink: x.datalink,
                    preview: x.preview}))};""")


def _check_overlay(got: dict) -> None:
    assert got["failures"] == 0 and not got["error_shown"], got["error"]
    assert got["series"] == got["plotted"] == K + 1 == got["table_rows"]
    assert all(n > 1000 for n in got["drawn"]), got["drawn"]
    ranks = [r["rank"] for r in got["rows"]]
    assert ranks == list(range(K + 1))
    distances = [r["distance"] for r in got["rows"][1:]]
    assert distances == sorted(distances)
    assert all(r["datalink"] and r["preview"] for r in got["rows"][1:])


def test_the_retrieve_page_overlays_the_neighbours_of_a_did(service, browser):
    did = _public_did(service)
    _open(browser, f"retrieve.html?ID={did}&K={K}")
    got = _wait_retrieved(browser)
    _check_overlay(got)
    assert got["rows"][0]["did"] == did and abs(got["rows"][0]["distance"]) < 1e-5
    links = [a.get_attribute("href") for a in browser.find_elements("css selector", "#results a")]
    assert any("sliders.html?ID=" in h for h in links)
    assert sum("/dlmeta" in h or "datalink" in h for h in links) >= K
    _shot(browser, "retrieve-did")
    assert _console_errors(browser) == []
    assert _foreign_requests(browser) == []


def _upload(driver, path: Path) -> dict:
    done = driver.execute_script("return harpsRetrieve.responses + harpsRetrieve.failures;")
    driver.find_element("id", "k").clear()
    driver.find_element("id", "k").send_keys(str(K))
    driver.find_element("id", "file").send_keys(str(path))
    driver.find_element("id", "upload").click()
    return _wait_retrieved(driver, done)


def test_the_retrieve_page_overlays_the_neighbours_of_an_uploaded_file(service, browser):
    require(S1D.is_file(), f"real HARPS file missing: {S1D}")
    _open(browser, "retrieve.html")
    got = _upload(browser, S1D)
    _check_overlay(got)
    assert got["rows"][0]["did"] is None  # the upload itself, not an archive product
    # the archive holds this very file: its nearest neighbour is its own star
    assert got["rows"][1]["target"] == "HD189733", got["rows"][:3]
    _shot(browser, "retrieve-upload")
    assert _console_errors(browser) == []
    assert _foreign_requests(browser) == []


def test_a_garbage_upload_shows_the_servers_message(service, browser):
    require(GARBAGE.is_file(), f"garbage HARPS file missing: {GARBAGE}")
    _open(browser, "retrieve.html")
    got = _upload(browser, GARBAGE)
    assert got["failures"] == 1 and got["error_shown"], got
    message = got["error"].strip()
    assert len(message) > 15 and "\n" not in message, message
    assert "absurd" in message.lower() or "flux" in message.lower(), message
    assert got["plotted"] == 0
    _shot(browser, "retrieve-garbage")
    # the refused upload itself is logged by chromium as a failed resource; nothing else
    assert _console_errors(browser, allowed="/retrieve/api") == []


def test_an_unknown_did_shows_the_servers_message(service, browser):
    did = pub_did("harps/data/no/such/spectrum.fits")
    _open(browser, f"retrieve.html?ID={did}")
    got = _wait_retrieved(browser)
    assert got["failures"] == 1 and got["error_shown"] and got["plotted"] == 0, got
    assert did in got["error"], got["error"]
    _shot(browser, "retrieve-unknown-did")
    assert _console_errors(browser, allowed="/retrieve/api") == []
