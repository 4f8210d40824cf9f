"""The README's Python blocks run as written, in order, in one fresh interpreter."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of ``text``, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_blocks_are_found():
    blocks = python_blocks("intro\n```python\na = 1\n```\ntext\n```\nshell\n```\n"
                           "```python\nb = a\n```\n")
    assert blocks == ["a = 1\n", "b = a\n"]


@pytest.mark.skipif(not README.exists(), reason="the README is not beside the tests")
def test_readme_python_blocks_run(tmp_path):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 5, "the README's Python blocks were not found"
    # Each block runs as a separate cell of one interpreter session, so that an error
    # names the block it came from; the blocks share one namespace, as when pasted in order.
    program = "namespace = {}\n" + "".join(
        f"exec(compile({block!r}, 'README.md block {i + 1}', 'exec'), namespace)\n"
        for i, block in enumerate(blocks))
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, textwrap.indent(result.stderr[-4000:], "    ")
