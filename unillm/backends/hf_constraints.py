"""The transformers engine's constraints, as logits processors in unillm's order: token rules
(logit_bias, allowed_token_ids, bad_words; unillm/token_rules.py) on the raw logits, then the
penalties, then the grammar mask of a `structured` constraint, then the sampling warpers.

transformers builds its own processors from the generation config (repetition penalty among
them) and puts the ones passed in after them, so with token rules the repetition penalty is
taken out of the config and run after the rules instead: a bias is added before penalties and
temperature, as vLLM and OpenAI define it.
"""

from __future__ import annotations

from typing import Any

from ..params import SamplingParams


def constrain(engine: Any, kwargs: dict[str, Any], record: dict[str, Any], p: SamplingParams,
              rows: int, prompt_len: int):
    """Add `p`'s token rules and grammar mask to `generate`'s kwargs (and say so in `record`).
    Returns one grammar matcher per row, or None without a constraint."""
    if p.structured is None and not (p.logit_bias or p.allowed_token_ids or p.bad_words):
        return None
    from ..token_rules import TokenRules

    width = engine.model_obj.get_output_embeddings().weight.shape[0]
    processors = kwargs["logits_processor"]
    config = kwargs["generation_config"]
    rules = TokenRules.of(p, engine.tokenizer, width)
    if rules is not None:
        front = [_rules_processor(rules, prompt_len)]
        if config.repetition_penalty not in (None, 1.0):
            from transformers import RepetitionPenaltyLogitsProcessor

            front.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
            config.repetition_penalty = 1.0
        processors[:0] = front
        record["token_rules"] = {**rules.record(), "before": "penalties, temperature, filters"}
    if p.structured is None:
        return None
    return _grammar(engine, processors, config, record, p, rows, prompt_len, width)


def _grammar(engine: Any, processors: Any, config: Any, record: dict[str, Any],
             p: SamplingParams, rows: int, prompt_len: int, width: int):
    """One grammar matcher per row and a processor masking each row to what its constraint
    allows. The sampling warpers (temperature, top-k/p, min-p) are run after the mask, in
    transformers' order, so a filter never sees (and never keeps only) disallowed tokens."""
    from .. import grammars
    from .hf_steps import constrained_logits, sampling_warpers

    matchers = grammars.matchers(p.structured, engine.tokenizer, rows, width)
    processors.append(constrained_logits(matchers, prompt_len))
    if config.do_sample:
        processors.extend(sampling_warpers(p))
        config.temperature, config.top_k, config.top_p, config.min_p = 1.0, 0, 1.0, None
    record["structured"] = {"kind": p.structured.kind, "library": grammars.LIBRARY,
                            "version": grammars.library_version(),
                            "warpers_after_mask": bool(config.do_sample)}
    return matchers


def _rules_processor(rules: Any, prompt_len: int):
    from transformers import LogitsProcessor

    class TokenRulesProcessor(LogitsProcessor):
        def __call__(self, input_ids, scores):
            outputs = input_ids[:, prompt_len:].tolist() if rules.bad_words else ()
            rules.apply_torch(scores, outputs)
            return scores

    return TokenRulesProcessor()
