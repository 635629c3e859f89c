"""The README tells the truth about the configuration: every TOML block in it is a valid
surefoot.toml (or part of one), as the loader reads it."""

from __future__ import annotations

import re
import tomllib

import pytest

from conftest import REPO
from surefoot.config.settings import ConfigFile

BLOCKS = re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_the_readme_has_its_config_examples() -> None:
    assert len(BLOCKS) >= 5
    assert any('engine = "swarm"' in block for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_toml_block_of_the_readme_validates(block: str) -> None:
    ConfigFile.model_validate(tomllib.loads(block))
