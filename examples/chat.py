"""Chat through the model's own chat template."""

import unillm
from _model import example_model

with unillm.load("transformers", example_model()) as gen:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime number."},
    ]
    params = unillm.SamplingParams(max_tokens=24, temperature=0.0)
    reply = gen.chat(messages, params)
    print("prompt as the model saw it:", repr(gen.tokenizer.chat_text(messages)))
    print("reply:", repr(reply.text), reply.finish_reason)
    for chunk in gen.stream_chat(messages, params):
        pass
    print("chat prompt tokens:", reply.timing.prompt_tokens)
