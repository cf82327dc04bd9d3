"""Stream tokens as they are produced, and get the full Completion (with timing) at the end."""

import unillm
from _model import example_model

with unillm.load("transformers", example_model()) as gen:
    params = unillm.SamplingParams(max_tokens=32, temperature=0.8, seed=42, stop=["\n\n"])
    stream = gen.stream("Once upon a time", params)
    for chunk in stream:
        print(chunk.text, end="", flush=True)
    print()
    done = stream.completion
    print(f"finish_reason={done.finish_reason} tokens={done.timing.output_tokens} "
          f"ttft={done.timing.ttft * 1000:.1f}ms tpot={done.timing.tpot * 1000:.2f}ms")
    # The same call without streaming gives the same text (same seed).
    assert gen.generate("Once upon a time", params).text == done.text
    print("streamed text == batch text")
