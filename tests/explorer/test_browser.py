"""The page in a real headless Chromium against a simulated system (the fake aggregator serving
simulated rounds): the price equals the API's and `test_aggregator.py --json`'s aggregate, the
chart draws a point per round and follows a new one live, a round page opens, SIMULATED cannot be
missed, and no script error or CSP violation happens. Screenshots are saved and their paths printed.

Chromium is Debian's `/usr/bin/chromium` (`.ci/run` installs it), driven by Playwright (never a
downloaded browser). Without it the test is skipped with the reason printed loudly.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from explorer.views import cents_text
from tests.explorer.conftest import System, close_system, make_system, populated_fake
from tests.explorer.fake_aggregator import make_round, start_fake
from tests.explorer.fake_committer import AnchoredCommitter

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ORACLE_CHROMIUM", "/usr/bin/chromium")
# What this machine's closed network needs (without them Chromium keeps dialling Google's hosts).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _loud_skip(capsys: pytest.CaptureFixture[str], reason: str) -> None:
    with capsys.disabled():
        banner = "!" * 78
        sys.stderr.write(f"\n{banner}\nBROWSER TEST SKIPPED: {reason}\n{banner}\n")
    pytest.skip(f"browser test skipped: {reason}")


@pytest.fixture
async def browser(capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError as error:
        _loud_skip(capsys, f"the playwright package is not installed ({error})")
    if shutil.which(CHROMIUM) is None:
        _loud_skip(
            capsys,
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ORACLE_CHROMIUM)",
        )
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
            )
        except Exception as error:  # noqa: BLE001 - any launch failure is the reason to print
            _loud_skip(capsys, f"Chromium at {CHROMIUM} did not start: {error}")
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def simulated() -> AsyncIterator[System]:
    now = time.time()
    built = await make_system(populated_fake(now), now)
    yield built
    await close_system(built)


async def _probe_json(port: int) -> dict[str, Any]:
    """`scripts/test_aggregator.py --json` against the fake aggregator, as an operator runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "test_aggregator.py"),
        "--json",
        "--target",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def _api(system: System, path: str) -> Any:
    async with system.http.get(system.url + path) as response:
        return await response.json()


async def _drawn_pixels(page: Any) -> int:
    """Non-transparent pixels on the chart's canvas: zero means nothing was drawn."""
    return int(
        await page.evaluate(
            """() => {
              const canvas = document.querySelector('#chart canvas');
              const context = canvas.getContext('2d');
              const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
              let count = 0;
              for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) count++;
              return count;
            }"""
        )
    )


async def _x_range(page: Any) -> tuple[int, int]:
    low = await page.get_attribute("#chart", "data-x-min")
    high = await page.get_attribute("#chart", "data-x-max")
    assert low is not None
    assert high is not None
    return int(low), int(high)


async def test_the_page_in_chromium(
    browser: Any,
    simulated: System,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shots = Path(os.environ.get("EXPLORER_SCREENSHOT_DIR", str(tmp_path)))
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    await page.goto(simulated.url + "/")
    rounds = len(simulated.fake.rounds)
    await page.wait_for_selector(f'#chart[data-points="{rounds}"] canvas', timeout=10_000)

    # The price shown is the API's, and the aggregate test_aggregator.py --json reports.
    api = await _api(simulated, "/api/price")
    shown = await page.get_attribute("#price-value", "data-exact")
    assert shown == api["price"]
    # The headline is the same exact value rounded to the cent (by the script, live).
    assert await page.text_content("#price-value") == cents_text(api["price"])
    assert await page.text_content("#price-exact") == api["price"]
    probe = await _probe_json(simulated.aggregator_port)
    assert probe["simulated"] is True
    assert abs(Decimal(repr(probe["aggregate"]["price"])) - Decimal(api["price"])) < Decimal(
        "0.00000001"
    )

    # SIMULATED cannot be missed: the banner is shown, on top, and the price is tagged.
    assert await page.is_visible("#simulated-banner")
    banner_box = await page.locator("#simulated-banner").bounding_box()
    assert banner_box is not None
    assert banner_box["y"] == 0
    assert banner_box["height"] >= 40
    assert await page.is_visible("#price-simulated")
    assert await page.is_hidden("#aggregator-banner")

    # The chart draws: one point per round in the data, and pixels on the canvas.
    assert await page.get_attribute("#chart", "data-points") == str(rounds)
    assert await _drawn_pixels(page) > 1000

    # Zoom: dragging across the plot narrows the visible time range; a double-click restores it.
    full = await _x_range(page)
    await page.locator("#chart").scroll_into_view_if_needed()
    over = await page.locator("#chart .u-over").bounding_box()
    assert over is not None
    middle_y = over["y"] + over["height"] / 2
    await page.mouse.move(over["x"] + over["width"] * 0.3, middle_y)
    await page.mouse.down()
    await page.mouse.move(over["x"] + over["width"] * 0.6, middle_y, steps=8)
    await page.mouse.up()
    zoomed = await _x_range(page)
    assert full[0] < zoomed[0] < zoomed[1] < full[1]
    assert zoomed[1] - zoomed[0] < (full[1] - full[0]) * 0.5
    await page.dblclick("#chart .u-over")
    assert await _x_range(page) == full

    # Back to the top: the sticky banner is drawn where the viewport is in a full-page shot.
    await page.evaluate("() => window.scrollTo(0, 0)")
    index_shot = shots / "explorer-index.png"
    await page.screenshot(path=str(index_shot), full_page=True)

    # A round closes: the page follows by itself (server-sent events), price and chart.
    minute = simulated.fake.price.aggregate_minute + 60
    prices = {"binance": Decimal("100700.00"), "coinbase": Decimal("100702.00")}
    simulated.fake.close_round(make_round(minute, prices), time.time())
    await page.wait_for_function(
        "() => document.querySelector('#price-value').dataset.exact === '100701.00000000'",
        timeout=10_000,
    )
    await page.wait_for_selector(f'#chart[data-points="{rounds + 1}"]', timeout=10_000)

    # Open a round from the table: every input, SIMULATED, not anchored yet.
    first_link = page.locator("#rounds-body a").first
    href = await first_link.get_attribute("href")
    assert href == f"/rounds/{minute}"
    await first_link.click()
    await page.wait_for_url(f"**/rounds/{minute}")
    round_api = await _api(simulated, f"/api/rounds/{minute}")
    assert await page.text_content("#round-price") == round_api["price"] == "100701.00000000"
    assert await page.is_visible("#simulated-banner")
    anchor = await page.text_content("#anchor-state")
    assert anchor is not None
    assert "not anchored yet" in anchor
    round_shot = shots / "explorer-round.png"
    await page.screenshot(path=str(round_shot), full_page=True)

    assert problems == [], problems  # no script error, no CSP violation, no failed load
    with capsys.disabled():
        sys.stderr.write(f"\nexplorer screenshots: {index_shot} {round_shot}\n")


async def test_the_page_says_the_aggregator_is_down_and_recovers(
    browser: Any,
    simulated: System,
    tmp_path: Path,
) -> None:
    shots = Path(os.environ.get("EXPLORER_SCREENSHOT_DIR", str(tmp_path)))
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(simulated.url + "/")
    price = (await _api(simulated, "/api/price"))["price"]
    await page.wait_for_selector(f'#price-value[data-exact="{price}"]')
    assert await page.is_hidden("#aggregator-banner")

    await simulated.server.stop(None)
    await page.wait_for_selector("#aggregator-banner", state="visible", timeout=10_000)
    banner = await page.text_content("#aggregator-banner")
    assert banner is not None
    assert f"Aggregator unreachable at 127.0.0.1:{simulated.aggregator_port}" in banner
    assert await page.text_content("#price-value") == "—"  # no stale price
    assert await page.text_content("#price-status") == "UNREACHABLE"
    await page.screenshot(path=str(shots / "explorer-down.png"))

    simulated.server, _ = await start_fake(simulated.fake, simulated.aggregator_port)
    await page.wait_for_selector("#aggregator-banner", state="hidden", timeout=15_000)
    await page.wait_for_selector(f'#price-value[data-exact="{price}"]', timeout=5_000)
    assert await page.text_content("#price-status") == "OK"


async def test_the_verify_command_of_an_anchored_round_is_copied(
    browser: Any,
) -> None:
    now = time.time()
    fake = populated_fake(now)
    minute = sorted(fake.rounds)[-5]
    system = await make_system(fake, now, anchors=AnchoredCommitter(minute))
    try:
        context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
        page = await context.new_page()
        await page.goto(f"{system.url}/rounds/{minute}")
        command = await page.text_content("#verify-command")
        assert command == f"committer verify proof-{minute}.json --oracle-key {'ef' * 32}"
        await page.click("#copy-verify")
        await page.wait_for_function(
            "() => document.querySelector('#copy-verify').textContent !== 'Copy command'"
        )
        assert await page.text_content("#copy-verify") == "Copied"
        assert await page.evaluate("() => navigator.clipboard.readText()") == command
        await context.close()
    finally:
        await close_system(system)
