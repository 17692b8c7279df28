"""Suite-wide options: ``pytest --device cuda`` builds every scenario that names no device on that device.

Tests marked ``cpu_only(why)`` check what only the CPU's tick does (one stream of pre-drawn uniforms shared by lone and
batched runs, episodes ended on the tick they end, kept hidden layers); on another device they are skipped with why.
"""

import os

import pytest

from narla.scenario import DEVICE_ENV


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", default=None,
        help=f"device of every scenario without one (cpu, cuda, cuda:N); sets ${DEVICE_ENV} for the session",
    )


def pytest_configure(config: pytest.Config) -> None:
    device = config.getoption("--device")
    if device:
        os.environ[DEVICE_ENV] = device


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    device = os.environ.get(DEVICE_ENV, "cpu")
    if device == "cpu":
        return
    for item in items:
        marker = item.get_closest_marker("cpu_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "a property of the CPU's tick"
            item.add_marker(pytest.mark.skip(reason=f"cpu only ({device} given): {why}"))
