"""Structured output: the same constraint, the same meaning, on any engine that has it.

A random-weight test model writes garbage; constrained, its output is valid every time.
"""

import json

import unillm
from _model import example_model

schema = {
    "type": "object", "additionalProperties": False, "required": ["name", "age"],
    "properties": {"name": {"type": "string", "maxLength": 12},
                   "age": {"type": "integer", "minimum": 0, "maximum": 130}},
}
with unillm.load("transformers", example_model()) as gen:
    params = unillm.SamplingParams(max_tokens=64, temperature=0.7, seed=1,
                                   structured={"json_schema": schema})
    out = gen.generate("A person:", params)
    person = json.loads(out.text)  # always parses: the schema was enforced token by token
    print("json:", out.text, out.finish_reason, sorted(person), "complete:", out.complete)
    pick = gen.generate("Sentiment:", {"max_tokens": 8, "temperature": 0,
                                       "structured": {"choice": ["positive", "negative"]}})
    print("choice:", pick.text)
    date = gen.generate("When?", {"max_tokens": 16, "temperature": 0,
                                  "structured": {"regex": r"20[0-9]{2}-[01][0-9]-[0-3][0-9]"}})
    print("regex:", date.text)
    # token rules (vLLM's names): only digit tokens, and never the token of "7"
    digits = [gen.tokenizer.encode_plain(str(d))[0] for d in range(10)]
    count = gen.generate("Count:", {"max_tokens": 6, "temperature": 0, "allowed_token_ids": digits,
                                    "logit_bias": {digits[7]: -100}})
    print("digits:", count.text)
    print("compile s:", f"{out.timing.grammar_compile_s:.4f}",
          "mask s:", f"{out.timing.grammar_mask_s:.4f}")
