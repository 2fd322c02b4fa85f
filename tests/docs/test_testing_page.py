"""docs/testing.md quotes real code: every Python block of the page is in the examples."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_python_block_of_the_page_is_tested_code() -> None:
    page = (ROOT / "docs" / "testing.md").read_text()
    examples = (Path(__file__).parent / "test_testing_examples.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 10
    for block in blocks:
        assert block.strip() in examples, f"this block of docs/testing.md is not tested:\n{block}"
