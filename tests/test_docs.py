"""Documentation generated from code stays in step with the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_doc_sections_are_up_to_date():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_public_name_is_documented_in_the_api_reference():
    import unillm

    reference = (ROOT / "docs" / "reference.md").read_text()
    documented = set(re.findall(r"^::: unillm\.(\w+)$", reference, re.M))
    public = set(unillm.__all__) - {"__version__"}
    assert public == documented, f"missing: {public - documented}, extra: {documented - public}"
    for name in public:
        assert (getattr(unillm, name).__doc__ or "").strip(), f"unillm.{name} has no docstring"
