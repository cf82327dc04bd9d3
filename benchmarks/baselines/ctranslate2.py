"""CTranslate2: `Generator.generate_batch` on the same converted model, the same settings.

Like unillm, the direct path tokenizes the prompts (token strings, as CTranslate2 takes them)
and decodes the outputs on every call: a user calling `generate_batch` on text does both.
"""

from __future__ import annotations


def direct(gen, prompts, params):
    engine = gen.engine
    generator = engine._main()  # the very ctranslate2.Generator unillm runs
    tok = engine.tokenizer.hf
    end_token = [] if params.ignore_eos else sorted(engine.tokenizer.eos_token_ids)

    def run() -> int:
        tokens = [tok.convert_ids_to_tokens(ids) for ids in tok(prompts)["input_ids"]]
        results = generator.generate_batch(
            tokens, max_length=params.max_tokens, min_length=params.min_tokens,
            sampling_topk=1, include_prompt_in_result=False, end_token=end_token,
            return_end_token=True,
        )
        ids = [r.sequences_ids[0] for r in results]
        tok.batch_decode(ids, skip_special_tokens=True)
        return sum(len(i) for i in ids)

    return run
