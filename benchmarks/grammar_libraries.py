"""The grammar-library choice, measured: llguidance, xgrammar and outlines-core on the same
vocabularies and the same constraints (the structured-output test suite's).

For each library, constraint and vocabulary:

- coverage: whether the library compiles the constraint at all (its own error otherwise);
- compile: seconds to compile it (caches off), and to its first mask (llguidance builds
  lazily, so its first mask carries work the others do up front);
- mask: the median and 95th percentile time to compute one token mask along a walk through
  the constraint: at each step every library computes its mask, one allowed token is drawn
  (seeded, uniformly among the tokens all libraries allow) and fed to all of them. A token one
  library allows and another does not is counted as a disagreement.

Vocabularies are byte strings, the same for each library (RAW in xgrammar's terms): the test
model's (2,048 byte-level BPE tokens) and, with --vocab, a real one. Llama 3's 128,256-token
vocabulary ships in llama-cpp-python's sdist (vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf);
export it where the `gguf` package is (the main environment), then run the comparison where
the three libraries are (vLLM's environment pins xgrammar and outlines-core):

    python benchmarks/grammar_libraries.py --export ggml-vocab-llama-bpe.gguf --to llama3.json
    .venv-vllm/bin/python benchmarks/grammar_libraries.py --vocab llama3.json \\
        --out benchmarks/results/grammar_libraries.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.structured.test_structured import CHOICES, REGEXES, SCHEMAS  # noqa: E402

GRAMMAR = 'start: "(" num ("+" num)* ")"\nnum: /[0-9]{1,3}/'
STEPS = 48


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed (token text -> bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def byte_level(tokens: list[str], special: set[int]) -> list[bytes]:
    table = _byte_decoder()
    return [b"" if i in special else bytes(table[c] for c in t) for i, t in enumerate(tokens)]


def export_gguf(path: str, to: str) -> None:
    import gguf

    r = gguf.GGUFReader(path)
    field = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    kinds = r.fields["tokenizer.ggml.token_type"]
    special = {i for i, d in enumerate(kinds.data) if int(kinds.parts[d][0]) != 1}
    eos = int(r.fields["tokenizer.ggml.eos_token_id"].parts[-1][0])
    vocab = byte_level(tokens, special)
    Path(to).write_text(json.dumps({"name": Path(path).stem, "eos": eos,
                                    "tokens": [t.hex() for t in vocab]}))
    print(f"wrote {to}: {len(vocab)} tokens")


def test_vocab() -> dict[str, Any]:
    from transformers import AutoTokenizer

    from unillm.testing import build_test_model

    tok = AutoTokenizer.from_pretrained(str(build_test_model("llama-tiny")))
    special = set(tok.all_special_ids)
    vocab = byte_level(tok.convert_ids_to_tokens(list(range(len(tok)))), special)
    return {"name": "test model (llama-tiny)", "eos": tok.eos_token_id,
            "tokens": [t.hex() for t in vocab]}


class Vocab:
    def __init__(self, spec: dict[str, Any]):
        self.name = spec["name"]
        self.tokens = [bytes.fromhex(t) for t in spec["tokens"]]
        self.eos = spec["eos"]
        self.size = len(self.tokens)
        self.special = [i for i, t in enumerate(self.tokens) if not t]


# -- one adapter per library: compile(constraint) -> matcher; mask(matcher) -> set; advance --
class Llguidance:
    name = "llguidance"

    def __init__(self, v: Vocab):
        import llguidance

        self.llg = llguidance
        tokens = [t or f"<|special_{i}|>".encode() for i, t in enumerate(v.tokens)]
        by_bytes = {t: i for i, t in enumerate(v.tokens) if t}
        longest = max(map(len, by_bytes))

        def encode(text):  # greedy longest match: llguidance tokenizes forced strings with it
            data = text if isinstance(text, bytes) else text.encode()
            out, pos = [], 0
            while pos < len(data):
                for n in range(min(longest, len(data) - pos), 0, -1):
                    hit = by_bytes.get(data[pos:pos + n])
                    if hit is not None:
                        out.append(hit)
                        pos += n
                        break
                else:
                    raise ValueError(f"byte {data[pos]} has no token")
            return out

        wrapper = type("V", (), {"eos_token_id": v.eos, "bos_token_id": None, "tokens": tokens,
                                 "special_token_ids": v.special, "is_tokenizer_wrapper": True,
                                 "__call__": lambda self, text: encode(text)})()
        self.tok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper))
        self.size = v.size

    def compile(self, kind: str, value: Any):
        M = self.llg.LLMatcher
        if kind == "json_schema":
            source = M.grammar_from_json_schema(value, defaults={
                "whitespace_flexible": False, "item_separator": ",", "key_separator": ":"})
        elif kind == "regex":
            source = M.grammar_from_regex(value)
        elif kind == "choice":
            source = M.grammar_from_lark("start: " + " | ".join(json.dumps(c, ensure_ascii=False)
                                                                for c in value))
        else:
            source = M.grammar_from_lark(value)
        bad, messages = M.validate_grammar_with_warnings(source, self.tok)
        if bad:
            raise ValueError(messages[0])
        return M(self.tok, source, log_level=0)

    def mask(self, m) -> bytes:
        return m.compute_bitmask()

    def advance(self, m, token: int) -> None:
        m.consume_token(token)


class Xgrammar:
    name = "xgrammar"

    def __init__(self, v: Vocab):
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo(v.tokens, xgr.VocabType.RAW, vocab_size=v.size,
                                 stop_token_ids=[v.eos])
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.bitmask = xgr.allocate_token_bitmask(1, v.size)

    def compile(self, kind: str, value: Any):
        c = self.compiler
        if kind == "json_schema":
            g = c.compile_json_schema(value, any_whitespace=False, separators=(",", ":"))
        elif kind == "regex":
            g = c.compile_regex(value)
        elif kind == "choice":
            g = c.compile_lark("start: " + " | ".join(json.dumps(x, ensure_ascii=False)
                                                      for x in value))
        else:
            g = c.compile_lark(value)
        return self.xgr.GrammarMatcher(g)

    def mask(self, m) -> bytes:
        m.fill_next_token_bitmask(self.bitmask, 0)
        return self.bitmask.numpy().tobytes()

    def advance(self, m, token: int) -> None:
        assert m.accept_token(token)


class OutlinesCore:
    name = "outlines-core"

    def __init__(self, v: Vocab):
        import numpy as np
        import outlines_core as oc

        self.oc, self.np = oc, np
        mapping: dict[bytes, list[int]] = {}
        for i, t in enumerate(v.tokens):
            if t and i != v.eos:
                mapping.setdefault(t, []).append(i)
        self.vocabulary = oc.Vocabulary(v.eos, mapping)
        self.mask_buf = np.zeros((v.size + 31) // 32, dtype=np.int32)

    def compile(self, kind: str, value: Any):
        from outlines_core.json_schema import build_regex_from_schema

        if kind == "json_schema":
            regex = build_regex_from_schema(json.dumps(value), whitespace_pattern="")
        elif kind == "regex":
            regex = value
        elif kind == "choice":
            regex = "(" + "|".join(_literal(c) for c in value) + ")"
        else:
            raise ValueError("outlines-core has no context-free grammars (regular languages only)")
        return self.oc.Guide(self.oc.Index(regex, self.vocabulary))

    def mask(self, m) -> bytes:
        m.write_mask_into(self.mask_buf.ctypes.data, self.mask_buf.size, 4)
        return self.mask_buf.tobytes()

    def advance(self, m, token: int) -> None:
        m.advance(token)


def _literal(text: str) -> str:
    return "".join("\\" + c if c in "\\.^$|?*+()[]{}" else c for c in text)


def _allowed(mask: bytes, size: int) -> set[int]:
    return {i for i in range(size) if mask[i >> 3] >> (i & 7) & 1}


def constraints() -> list[tuple[str, str, Any]]:
    out = [(f"json:{k}", "json_schema", v) for k, v in SCHEMAS.items()]
    out += [(f"regex{i}", "regex", r) for i, r in enumerate(REGEXES)]
    out += [(f"choice{i}", "choice", c) for i, c in enumerate(CHOICES)]
    out.append(("grammar", "grammar", GRAMMAR))
    return out


def measure(vocab: Vocab, seed: int) -> list[dict[str, Any]]:
    libs = [cls(vocab) for cls in (Llguidance, Xgrammar, OutlinesCore)]
    rows = []
    for cid, kind, value in constraints():
        matchers, row = {}, {"vocab": vocab.name, "constraint": cid, "kind": kind}
        for lib in libs:
            start = time.perf_counter()
            try:
                m = lib.compile(kind, value)
            except Exception as exc:  # noqa: BLE001 - coverage is what is measured
                row[lib.name] = {"supported": False, "error": str(exc).splitlines()[0][:160]}
                continue
            compiled = time.perf_counter() - start
            first = lib.mask(m)
            row[lib.name] = {"supported": True, "compile_s": compiled,
                             "first_mask_s": time.perf_counter() - start, "mask_s": []}
            matchers[lib.name] = (lib, m, first)
        rng, disagreements, walked = random.Random(seed), 0, []
        masks = {name: first for name, (_, _, first) in matchers.items()}
        for _ in range(STEPS):
            sets = {name: _allowed(mask, vocab.size) - {vocab.eos} for name, mask in masks.items()}
            common = set.intersection(*sets.values()) if sets else set()
            if any(s != common for s in sets.values()):
                disagreements += 1
                text = b"".join(vocab.tokens[t] for t in walked).decode("utf-8", "replace")
                for name, s in sets.items():
                    extra = sorted(s - common)
                    if extra and len(row[name].setdefault("allows_more", [])) < 3:
                        row[name]["allows_more"].append(
                            {"after": text[-40:], "e.g.": [vocab.tokens[t].decode(
                                "utf-8", "replace") for t in extra[:4]], "tokens": len(extra)})
            if not common:
                break
            token = rng.choice(sorted(common))
            walked.append(token)
            for name, (lib, m, _) in matchers.items():
                lib.advance(m, token)
                start = time.perf_counter()
                masks[name] = lib.mask(m)
                row[name]["mask_s"].append(time.perf_counter() - start)
        row["steps"] = len(next(iter(row[n]["mask_s"] for n in matchers), []))
        row["disagreeing_steps"] = disagreements
        for name in matchers:
            times = sorted(row[name].pop("mask_s"))
            row[name]["mask_median_s"] = statistics.median(times) if times else None
            row[name]["mask_p95_s"] = times[int(0.95 * (len(times) - 1))] if times else None
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    parts = [f"{row['vocab'][:12]:12} {row['constraint']:34}"]
    for name in ("llguidance", "xgrammar", "outlines-core"):
        r = row.get(name, {})
        if not r.get("supported"):
            parts.append(f"{name}: unsupported")
        else:
            parts.append(f"{name}: compile {r['compile_s'] * 1e3:7.1f} ms, mask "
                         f"{(r['mask_median_s'] or 0) * 1e6:6.0f} us")
    return " | ".join(parts) + f" | disagree {row['disagreeing_steps']}"


def summary(path: str) -> str:
    """A Markdown table of a results file: per vocabulary and library, coverage, compile time,
    time to the first mask, and the median per-token mask time (medians over constraints)."""
    data = json.loads(Path(path).read_text())
    lines = ["| vocabulary | library | compiles | compile (median / max) | to first mask "
             "(median / max) | mask per token (median of medians) | steps that disagree |",
             "|---|---|---|---|---|---|---|"]
    for vocab in dict.fromkeys(r["vocab"] for r in data["rows"]):
        rows = [r for r in data["rows"] if r["vocab"] == vocab]
        for name in ("llguidance", "xgrammar", "outlines-core"):
            ok = [r[name] for r in rows if r[name].get("supported")]
            ms = lambda xs: f"{statistics.median(xs) * 1e3:.1f} / {max(xs) * 1e3:.0f} ms"  # noqa: E731
            extra = sum(len(r[name].get("allows_more", [])) > 0 for r in rows
                        if r[name].get("supported"))
            lines.append(
                f"| {vocab} | {name} | {len(ok)}/{len(rows)} | {ms([r['compile_s'] for r in ok])} "
                f"| {ms([r['first_mask_s'] for r in ok])} | "
                f"{statistics.median(r['mask_median_s'] for r in ok) * 1e6:.0f} us | "
                f"allows tokens the others do not in {extra} constraints |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", help="a vocabulary-only GGUF to export (needs `gguf`)")
    ap.add_argument("--to", help="where --export writes its JSON")
    ap.add_argument("--vocab", action="append", default=[], help="exported vocabulary JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/grammar_libraries.json")
    ap.add_argument("--summary", help="print a results file as a Markdown table")
    args = ap.parse_args()
    if args.summary:
        print(summary(args.summary))
        return
    if args.export:
        export_gguf(args.export, args.to)
        return
    from importlib.metadata import version

    vocabs = [Vocab(test_vocab())] + [Vocab(json.loads(Path(p).read_text())) for p in args.vocab]
    rows = [r for v in vocabs for r in measure(v, args.seed)]
    versions = {n: version(n) for n in ("llguidance", "xgrammar", "outlines_core")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"versions": versions, "steps": STEPS, "rows": rows},
                                         indent=1))
    print("wrote", args.out, versions)


if __name__ == "__main__":
    main()
