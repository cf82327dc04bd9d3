"""Regenerate the doc sections that are derived from code (run after changing SamplingParams):

    python scripts/gen_docs.py          # rewrite
    python scripts/gen_docs.py --check  # exit 1 if a doc is out of date (tests run this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN GENERATED: {name} -->", "<!-- END GENERATED: {name} -->"


def params_table() -> str:
    from unillm.params import parameter_table

    lines = ["| field | unillm default | allowed | meaning |", "|---|---|---|---|"]
    for row in parameter_table():
        lines.append(f"| `{row['field']}` | `{row['default']}` | {row['allowed']} | {row['meaning']} |")
    return "\n".join(lines)


def _scores(p) -> str:
    if not p.echo_scores:
        return f"no: {p.score_refusal}"
    note = " (models whose tokenizer adds a start token)" if p.echo_needs_bos else ""
    return f"yes: `echo` + `logprobs`, `max_tokens` {p.echo_max_tokens}{note}"


def server_profiles_table() -> str:
    """The `openai` engine's server profiles: what each honours natively, who matches stops."""
    from unillm.backends._profiles import PROFILES
    from unillm.engine import ALL_FIELDS

    lines = ["| `server=` | for | honoured by the server | stop strings matched by | "
             "`structured` kinds (its own fields) | refused | scores text (`Generator.score`) "
             "| tested here |",
             "|---|---|---|---|---|---|---|---|"]
    for p in PROFILES.values():
        native = {"max_tokens", "temperature"} | set(p.params)
        stops = (f"the server (`{p.stop_field}` names the match)" if p.stop_field
                 else "unillm (stream closed at the match)")
        refused = sorted(ALL_FIELDS - native - {"stop", "n"} - ({"structured"} if
                                                              p.constraint_kinds else set()))
        lines.append(
            f"| `{p.name}` | {p.title} | {', '.join(f'`{f}`' for f in sorted(native - {'stop'}))} "
            f"| {stops} | {', '.join(sorted(p.constraint_kinds)) or 'none'} "
            f"| {', '.join(f'`{f}`' for f in refused) or '-'} | {_scores(p)} "
            f"| {('yes: ' + p.tested_with) if p.tested_with else 'no: from its documented schema'} |"
        )
    return "\n".join(lines)


SECTIONS = {
    "docs/sampling.md": {"params-table": params_table},
    "docs/engines/http.md": {"server-profiles": server_profiles_table},
}


def render(text: str, name: str, body: str) -> str:
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"marker {begin} missing")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for rel, sections in SECTIONS.items():
        path = ROOT / rel
        text = path.read_text()
        new = text
        for name, fn in sections.items():
            new = render(new, name, fn())
        if new != text:
            stale.append(rel)
            if not check:
                path.write_text(new)
    if check and stale:
        print(f"out of date: {', '.join(stale)} (run python scripts/gen_docs.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
