"""The drawing page in a real Chromium, through the UI server, against a real TorchServe.

With the default (untrained) model only the plumbing is checked: a prediction and ten
bars that sum to one. With ``DIGIT_MAR`` set to a trained archive the digits must be
read correctly too. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator

import pytest
from PIL import Image
from serving_support import ROOT, blank_png, png_variant
from webapp_support import TRAINED_MAR, Caller, UIStack, caller_page, dead_url, running_ui, ui_stack

from digit_classifier.web.browser import CHROMIUM, launch

if not CHROMIUM.is_file():
    pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, ConsoleMessage, FilePayload, Page, Request, sync_playwright

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts"
Stroke = list[tuple[float, float]]
ONE: list[Stroke] = [[(150, 40), (140, 140), (132, 240)]]
SEVEN: list[Stroke] = [[(70, 60), (140, 58), (210, 60), (170, 140), (125, 235)]]
FOUR: list[Stroke] = [[(90, 40), (70, 150), (200, 150)], [(170, 60), (165, 245)]]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIStack]:
    with ui_stack(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


class Tab:
    """A page plus what it sent to the API and any script errors it raised."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.api_requests: list[Request] = []
        self.errors: list[str] = []
        page.on("request", self.on_request)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self.on_console)

    def on_request(self, request: Request) -> None:
        if "/api/" in request.url:
            self.api_requests.append(request)

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.errors.append(message.text)

    def draw(self, strokes: list[Stroke]) -> None:
        """Mouse strokes given in canvas pixels (0 to 280), mapped onto the canvas as shown."""
        box = self.page.locator("#pad").bounding_box()
        assert box is not None
        scale_x, scale_y = box["width"] / 280, box["height"] / 280
        for stroke in strokes:
            x, y = stroke[0]
            self.page.mouse.move(box["x"] + x * scale_x, box["y"] + y * scale_y)
            self.page.mouse.down()
            for x, y in stroke[1:]:
                self.page.mouse.move(box["x"] + x * scale_x, box["y"] + y * scale_y, steps=6)
            self.page.mouse.up()

    def settled(self) -> str:
        """Wait for an answer or an error; returns the result state."""
        self.page.wait_for_selector("#result[data-state=ready], #result[data-state=error]", timeout=20_000)
        return self.page.get_attribute("#result", "data-state")

    def answer(self) -> tuple[int, list[float]]:
        assert self.settled() == "ready", self.text("#message")
        digit = int(self.text("#prediction"))
        bars = [
            float(value)
            for value in self.page.eval_on_selector_all(
                "#chart .bar", "bars => bars.map(bar => bar.dataset.probability)"
            )
        ]
        assert len(bars) == 10 and sum(bars) == pytest.approx(1.0, abs=1e-4)
        assert max(range(10), key=bars.__getitem__) == digit
        top = self.page.eval_on_selector_all("#chart .bar.top", "bars => bars.map(bar => bar.dataset.digit)")
        assert top == [str(digit)]
        return digit, bars

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector).strip()

    def pad_pixel(self, x: int, y: int) -> int:
        script = "([x, y]) => pad.getContext('2d').getImageData(x, y, 1, 1).data[0]"
        return self.page.evaluate(script, [x, y])

    def all_bars_zero(self) -> bool:
        return self.page.eval_on_selector_all(
            "#chart .bar", "bars => bars.every(bar => bar.dataset.probability === '0')"
        )

    def sample_image(self) -> Image.Image:
        """The image shown beside the answer (the blob that was sent), pixels and alpha."""
        data_url = self.page.eval_on_selector(
            "#sample",
            """img => {
                const copy = document.createElement('canvas');
                copy.width = img.naturalWidth;
                copy.height = img.naturalHeight;
                copy.getContext('2d').drawImage(img, 0, 0);
                return copy.toDataURL('image/png');
            }""",
        )
        return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / f"browser-{name}.png", full_page=True, animations="disabled")


@pytest.fixture
def tab(browser: Browser, stack: UIStack) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 960, "height": 800})
    opened = Tab(context.new_page())
    opened.page.goto(stack.url)
    yield opened
    context.close()
    assert not opened.errors


@pytest.mark.parametrize(
    ("name", "strokes", "digit"), [("one", ONE, 1), ("seven", SEVEN, 7), ("four", FOUR, 4)]
)
def test_drawing_is_classified_when_the_stroke_ends(
    tab: Tab, name: str, strokes: list[Stroke], digit: int
) -> None:
    tab.draw(strokes)
    predicted, _ = tab.answer()
    tab.screenshot(f"draw-{name}")
    assert len(tab.api_requests) == len(strokes), "one request per finished stroke"
    image = tab.sample_image()
    assert image.size == (280, 280) and image.getchannel("A").getextrema() == (255, 255), "opaque"
    pixels = image.convert("L")
    assert pixels.getpixel((2, 2)) == 0 and pixels.getextrema() == (0, 255), "white ink on black"
    assert tab.page.get_attribute("#sample", "src").startswith("blob:")
    assert tab.text("#sample-caption") == "Your drawing"
    if TRAINED_MAR:
        assert predicted == digit


def test_uploaded_png_is_shown_beside_the_answer(tab: Tab) -> None:
    tab.page.set_input_files("#upload", ROOT / "examples" / "seven.png")
    predicted, _ = tab.answer()
    assert tab.text("#sample-caption") == "seven.png"
    shown = tab.page.eval_on_selector(
        "#sample",
        """img => ({hidden: img.hidden, width: img.naturalWidth, src: img.src, alt: img.alt,
                    backdrop: getComputedStyle(img).backgroundColor})""",
    )
    assert not shown["hidden"] and shown["width"] == 280 and shown["src"].startswith("blob:")
    assert shown["alt"] == "Uploaded image seven.png"
    assert shown["backdrop"] == "rgb(255, 255, 255)", "dark ink on a transparent PNG is shown on white"
    tab.screenshot("upload")
    if TRAINED_MAR:
        assert predicted == 7


def upload(name: str, data: bytes, mime_type: str = "image/png") -> FilePayload:
    return {"name": name, "mimeType": mime_type, "buffer": data}


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("text", upload("notes.txt", b"not an image", "text/plain"), "not a PNG"),
        ("blank", upload("blank.png", blank_png()), "No digit found"),
        ("cut", upload("cut.png", b"\x89PNG\r\n\x1a\n\0\0"), "could not read"),
    ],
)
def test_bad_uploads_give_a_readable_error(tab: Tab, name: str, payload: FilePayload, message: str) -> None:
    tab.page.set_input_files("#upload", files=[payload])
    assert tab.settled() == "error"
    assert message in tab.text("#message")
    assert tab.text("#prediction") == "!"
    assert tab.all_bars_zero()


def test_clear_resets_the_pad_and_the_answer(tab: Tab) -> None:
    tab.draw(SEVEN)
    tab.answer()
    tab.page.click("#clear")
    assert tab.page.get_attribute("#result", "data-state") == "idle"
    assert tab.text("#prediction") == "\N{EN DASH}"
    assert tab.all_bars_zero()
    assert tab.page.is_hidden("#sample")
    assert tab.pad_pixel(140, 60) == 0
    tab.page.click("#predict")
    assert tab.text("#message") == "Draw a digit first."


def test_blank_pad_sends_nothing(tab: Tab) -> None:
    tab.page.click("#predict")
    assert tab.text("#message") == "Draw a digit first."
    tab.page.wait_for_timeout(300)
    assert tab.api_requests == []


def test_model_server_down_is_reported(browser: Browser) -> None:
    with running_ui(dead_url()) as ui:
        context = browser.new_context()
        page = context.new_page()
        page.goto(ui.url)
        tab = Tab(page)
        tab.draw(ONE)
        assert tab.settled() == "error"
        assert tab.text("#message").startswith("Model server unavailable at http://127.0.0.1:")
        tab.screenshot("model-server-down")
        context.close()


def test_app_server_unreachable_is_reported(tab: Tab) -> None:
    tab.page.route("**/api/digit", lambda route: route.abort("connectionrefused"))
    tab.draw(ONE)
    assert tab.settled() == "error"
    assert "Cannot reach the app server" in tab.text("#message")


def test_phone_touch_drawing_maps_onto_the_pad(browser: Browser, stack: UIStack) -> None:
    """On a narrow touch screen the pad is scaled; a finger stroke must land where it is drawn."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(stack.url)
    tab = Tab(page)
    box = page.locator("#pad").bounding_box()
    assert box is not None and box["width"] != 280 and box["x"] + box["width"] <= 360
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    def touch(kind: str, fx: float = 0, fy: float = 0) -> None:
        x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
        points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    cdp = context.new_cdp_session(page)
    touch("touchStart", 0.25, 0.2)
    for step in range(1, 11):
        touch("touchMove", 0.25 + 0.05 * step, 0.2)
    touch("touchEnd")
    tab.answer()
    assert tab.pad_pixel(140, 56) == 255 and tab.pad_pixel(140, 140) == 0 and tab.pad_pixel(30, 56) == 0
    assert page.evaluate("scrollY") == 0, "drawing must not scroll the page"
    tab.screenshot("phone")
    context.close()
    assert not tab.errors


def test_controls_are_labelled_and_reachable_by_keyboard(tab: Tab) -> None:
    page = tab.page
    focused = []
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert focused == ["clear", "predict", "upload"]
    assert page.inner_text("label[for=upload]") == "Upload PNG"
    page.set_input_files("*:focus", ROOT / "examples" / "one.png")
    predicted, _ = tab.answer()
    assert page.get_attribute("#answer", "aria-live") == "polite"
    assert re.fullmatch(r"\d", tab.text("#prediction"))
    if TRAINED_MAR:
        assert predicted == 1


# --- a page of another origin (CORS) ----------------------------------------------------------


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caller]:
    with caller_page(tmp_path_factory.mktemp("caller")) as page:
        yield page


@pytest.mark.parametrize("raw", [False, True], ids=["form upload", "raw png, preflighted"])
def test_a_page_of_another_origin_can_call_the_api(
    browser: Browser, stack: UIStack, caller: Caller, raw: bool
) -> None:
    context = browser.new_context()
    answer = caller.post(context.new_page(), f"{stack.url}api/digit", png_variant("L_white_on_black"), raw)
    context.close()
    assert answer.get("status") == 200, answer
    assert set(answer["body"]) == {"prediction", "percentages"}


def test_origins_left_out_of_the_setting_are_refused_by_the_browser(
    browser: Browser, stack: UIStack, caller: Caller
) -> None:
    png = png_variant("L_white_on_black")
    context = browser.new_context()
    page = context.new_page()
    inference = stack.torchserve.inference
    with (
        running_ui(inference, cors_origins=("http://elsewhere.example",)) as elsewhere,
        running_ui(inference, cors_origins=(caller.origin,)) as listed,
    ):
        refused = caller.post(page, f"{elsewhere.url}api/digit", png)
        allowed = caller.post(page, f"{listed.url}api/digit", png, raw=True)
    context.close()
    assert "Failed to fetch" in refused.get("error", ""), refused
    assert allowed.get("status") == 200, allowed
