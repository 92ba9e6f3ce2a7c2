"""`make test`'s workers: every Ray test runs on the one worker whose Ray cluster they share.

tests/conftest.py's scheduler sees node ids only, so it picks the Ray tests by their module or
their executor parameter; a Ray test outside that rule would start a second cluster on another
worker. Checked on the tests collected with this one (in `make test`, the whole suite: every
worker collects every test).
"""

from __future__ import annotations

import pytest

from tests.conftest import worker_group


def test_ray_tests_and_only_they_are_in_the_ray_group(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    ray_items = [item for item in items if item.get_closest_marker("ray") is not None]
    if not ray_items:
        pytest.skip("no Ray test collected with this one")
    misplaced = [
        item.nodeid
        for item in items
        if (worker_group(item.nodeid) == "ray") != (item.get_closest_marker("ray") is not None)
    ]
    assert not misplaced


def test_other_tests_are_grouped_by_module() -> None:
    assert worker_group("tests/e2e/test_discord_bot.py::test_story_card") == (
        "tests/e2e/test_discord_bot.py"
    )
    assert worker_group("tests/service/test_filters.py::test_x[local-a b]") == (
        "tests/service/test_filters.py"
    )
    assert worker_group("tests/service/test_filters.py::test_x[ray-a b]") == "ray"
    assert worker_group("tests/model/test_x.py::test_y[array]") == "tests/model/test_x.py"
