"""Issue 17 (hardening): the Jinja2 sandbox bounds size and cost of every render; mapping output depth."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from openconnector.mapping import MappingError, compile_mapping
from openconnector.mapping.runner import apply_mapping, apply_mapping_sync
from openconnector.mapping.templates import (
    MAX_STRING_LENGTH,
    RenderBudget,
    TemplateBudgetError,
    TemplateRenderError,
    compile_template,
    render_budget,
)


def render(source: str, **context: Any) -> str:
    return compile_template(source).render(context)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "source",
    [
        "{{ ('a'.encode('ascii') * 1500000000)|length }}",  # grew the process by 750 MB
        "{{ (1500000000 * 'a'.encode('ascii'))|length }}",
        "{{ 'a'.encode('ascii').center(1500000000)|length }}",
        "{{ 'a'.encode('ascii').ljust(1500000000)|length }}",
        "{{ 'a'.encode('ascii').zfill(1500000000)|length }}",
        "{{ ('\\t'.encode('ascii')).expandtabs(1500000000)|length }}",
        "{{ (('a' * 900000).encode('ascii') + ('a' * 900000).encode('ascii'))|length }}",
    ],
)
def test_bytes_cannot_inflate(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        render(source)


@pytest.mark.timeout(30)
def test_sum_with_a_list_start_is_refused() -> None:
    # Quadratic list concatenation inside one C call: stalled 17 s.
    with pytest.raises(TemplateRenderError, match="sum"):
        render("{{ (items * 3000)|sum(start=[])|length }}", items=[[1] * 100])
    assert render("{{ [1, 2, 3]|sum }}") == "6"
    assert render("{{ [1.5, 2]|sum(start=1) }}") == "4.5"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "source",
    [
        # nested loops of heavy work ran 6-55 s; each iteration stays under every size limit
        "{% for i in range(300) %}{% for j in range(300) %}{{ (('x' * 900000) ~ '')|length > 1 }}"
        "{% endfor %}{% endfor %}",
        "{% for i in range(99000) %}{{ (big|upper)|length > 1 }}{% endfor %}",
        "{% for i in range(99000) %}{{ big.split('a')|length > 1 }}{% endfor %}",
    ],
)
def test_heavy_work_in_loops_exhausts_the_budget(source: str) -> None:
    started = time.thread_time()
    with pytest.raises(TemplateBudgetError):
        render(source, big="a" * 500_000)
    assert time.thread_time() - started < 20


def test_the_budget_is_shared_by_every_render_of_one_application() -> None:
    mapping = compile_mapping({"mapping": {"v": "{{ (text ~ text)|length }}"}})
    items = [{"text": "y" * 400_000}] * 200  # each render is fine; all 200 cost ~320 M units
    with pytest.raises(MappingError) as raised:
        apply_mapping_sync(mapping, items, 64)
    assert raised.value.budget


def test_a_fresh_budget_per_application() -> None:
    mapping = compile_mapping({"mapping": {"v": "{{ (text ~ text)|length }}"}})
    for _ in range(5):
        assert apply_mapping_sync(mapping, [{"text": "y" * 400_000}] * 10, 64) == [{"v": "800000"}] * 10


def test_budget_charges_are_counted() -> None:
    with render_budget(RenderBudget()) as budget:
        render("{% for i in range(10) %}{{ i ~ 'x' }}{% endfor %}")
    assert budget.cost > 10 * 100


def test_ordinary_templates_still_render() -> None:
    assert render("{{ name|upper }}-{{ items|join(',') }}", name="zaak", items=[1, 2]) == "ZAAK-1,2"
    assert render("{{ 'ab' * 3 }}") == "ababab"
    with pytest.raises(TemplateRenderError):
        render("{{ 'a' * (max + 1) }}", max=MAX_STRING_LENGTH)


def test_mapped_output_deeper_than_the_limit_is_a_mapping_error() -> None:
    deep_path = ".".join(f"k{n}" for n in range(100))
    mapping = compile_mapping({"mapping": {deep_path: "value"}})
    assert apply_mapping_sync(mapping, {"value": 1}, 128) is not None
    with pytest.raises(MappingError, match="deeper than 64"):
        apply_mapping_sync(mapping, {"value": 1}, 64)


def test_dot_path_copy_of_deep_input_is_a_mapping_error_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = {"a": deep}
    mapping = compile_mapping({"passThrough": True, "mapping": {"copy": "a"}})
    with pytest.raises(MappingError):
        apply_mapping_sync(mapping, {"a": deep}, 64)


async def test_a_runaway_render_does_not_block_the_event_loop() -> None:
    mapping = compile_mapping({"mapping": {"v": "{% for i in range(99000) %}{{ i + 1 }}{% endfor %}"}})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        with pytest.raises(MappingError) as raised:
            await apply_mapping(mapping, {"big": "a" * 500_000}, 64)
    finally:
        task.cancel()
    assert raised.value.budget
    assert ticks > 0  # the loop ran while the render was busy


@pytest.mark.parametrize(("cast", "value"), [("integer", "9" * 30), ("jsonToArray", "[1" + "0" * 30 + "]")])
def test_mapped_output_that_cannot_be_encoded_is_a_mapping_error(cast: str, value: str) -> None:
    mapping = compile_mapping({"passThrough": True, "cast": {"v": cast}})
    with pytest.raises(MappingError, match="cannot be encoded"):
        apply_mapping_sync(mapping, {"v": value}, 64)


@pytest.mark.timeout(20)
def test_format_strings_from_input_are_checked_in_linear_time() -> None:
    # The old width check rescanned to the end after every "%(": 200,000 of them took ~70 s.
    with pytest.raises(TemplateRenderError):
        render("{{ value % 1 }}", value="%(" * 200_000)
    with pytest.raises(TemplateRenderError, match="width"):
        render("{{ value|format(1) }}", value="%(a(b))99999d")
    assert render("{{ '%%%5.1f' % 3.14159 }}") == "%  3.1"
