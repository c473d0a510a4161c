"""Shared fixtures. Tests that run the embedded model or a real server are marked `slow`."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_hub import fake_hub  # noqa: F401  (the fake Hugging Face Hub fixture, for every test module)


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The converted embedded teacher (SmolLM2-135M-Instruct) folder; converts it on first use."""
    from factory.embedded import EmbeddedModelError, embedded_model_path

    try:
        return embedded_model_path()
    except EmbeddedModelError as e:
        pytest.skip(f"embedded model unavailable: {e}")
