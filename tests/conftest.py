"""Suite-wide options: ``pytest --device cuda`` builds every scenario that names no device on that device."""

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
