"""Fixtures for constrain.testing's tests: one example sampler (tokenizer only) per session."""

from __future__ import annotations

import pytest

from constrain.testing import ExampleSampler


def pytest_configure(config: pytest.Config) -> None:
    # The plugin tests run small test projects with pytester.
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


@pytest.fixture(scope="session")
def sampler() -> ExampleSampler:
    return ExampleSampler()
