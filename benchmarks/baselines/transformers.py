"""transformers: `model.generate` on the same model object, the same explicit config.

Like unillm, the direct path tokenizes the prompts and decodes the outputs on every call: a
user calling `model.generate` on text does both.
"""

from __future__ import annotations


def direct(gen, prompts, params):
    import torch
    from transformers import GenerationConfig

    engine = gen.engine
    model = engine.model_obj
    tok = engine.tokenizer.hf
    tok.padding_side = "left"
    config = GenerationConfig(
        max_new_tokens=params.max_tokens, min_new_tokens=params.min_tokens or None,
        do_sample=not params.is_greedy, num_beams=1, pad_token_id=engine.pad_token_id,
        eos_token_id=None if params.ignore_eos else sorted(engine.tokenizer.eos_token_ids),
    )

    def run() -> int:
        batch = tok(prompts, return_tensors="pt", padding=True)
        ids = batch["input_ids"].to(engine.device)
        mask = batch["attention_mask"].to(engine.device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        new = out[:, ids.shape[1]:]
        tok.batch_decode(new, skip_special_tokens=True)
        return int(new.numel())

    return run
