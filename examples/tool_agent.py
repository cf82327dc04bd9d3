"""An agent loop: the model calls a tool, the program runs it and sends the result back as a
``tool`` message, and the model answers.

A random-weight test model never decides to call a tool by itself, so here the first turn
requires one (``tool_choice="required"``: a grammar enforces it, so the call always parses and
its arguments validate); with a real model (UNILLM_EXAMPLE_MODEL=Qwen/Qwen2.5-0.5B-Instruct)
every turn is ``auto`` and the model decides.
"""

import json
import os

import unillm
from _model import example_model


def get_weather(city: str, unit: str = "celsius") -> dict:
    return {"city": city, "sky": "clear", "temperature": 21 if unit == "celsius" else 70,
            "unit": unit}


FUNCTIONS = {"get_weather": get_weather}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}}]

real_model = "UNILLM_EXAMPLE_MODEL" in os.environ
messages = [{"role": "system", "content": "Answer with the tools you are given."},
            {"role": "user", "content": "What is the weather in Paris?"}]
with unillm.load("transformers", example_model("test:qwen2-tools")) as gen:
    choice = "auto" if real_model else "required"
    for turn in range(4):
        out = gen.chat(messages, {"max_tokens": 128, "temperature": 0}, tools=TOOLS,
                       tool_choice=choice, parallel_tool_calls=False)
        print(f"turn {turn}: format: {out.tool_format}, finish_reason: {out.finish_reason}")
        if not out.tool_calls:
            print("answer:", repr(out.content))
            break
        messages.append({"role": "assistant", "content": out.content,
                         "tool_calls": [call.to_openai() for call in out.tool_calls]})
        for call in out.tool_calls:
            result = FUNCTIONS[call.name](**call.parsed_arguments())
            print(f"call: {call.name}({call.arguments}) -> {json.dumps(result)}")
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": json.dumps(result)})
        choice = "auto"  # with the results in hand, the model may answer
