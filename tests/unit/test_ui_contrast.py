"""The web page's colours meet WCAG 2.x AA contrast (4.5:1 for normal text) on the backgrounds they are
used on: computed from the stylesheet itself, so a colour change that breaks it fails here."""

from __future__ import annotations

import importlib.resources
import re

import pytest

STYLESHEET = importlib.resources.files("openconnector.ui").joinpath("static/ui.css").read_text()
VARIABLES = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", STYLESHEET))
WHITE = "#ffffff"
HEADER = "#14213d"  # .site-header background
BUTTON_HOVER = "#083a73"


def colour(name: str) -> str:
    return name if name.startswith("#") else VARIABLES[name]


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(colour(foreground)), luminance(colour(background))), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize(
    ("foreground", "background"),
    [
        ("text", "bg"),
        ("text", "panel"),
        ("muted", "bg"),
        ("muted", "panel"),
        ("link", "bg"),
        ("link", "panel"),
        ("ok-text", "ok-bg"),
        ("bad-text", "bad-bg"),
        ("bad-text", "bg"),
        ("warn-text", "warn-bg"),
        ("unknown-text", "unknown-bg"),
        (WHITE, HEADER),
        (WHITE, "link"),
        (WHITE, BUTTON_HOVER),
    ],
)
def test_text_colours_meet_wcag_aa(foreground: str, background: str) -> None:
    assert contrast(foreground, background) >= 4.5


def test_the_stylesheet_uses_the_colours_checked_here() -> None:
    assert HEADER in STYLESHEET
    assert BUTTON_HOVER in STYLESHEET
    assert {"text", "bg", "panel", "muted", "link", "focus"} <= VARIABLES.keys()
