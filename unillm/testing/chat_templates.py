"""Chat templates with tool support for the test models, one per tool-call format.

No model can be downloaded here, so these stand in for the templates real model families ship:
each renders `tools`, an assistant's `tool_calls` and `tool` replies the way its family does,
and spells its family's tool-call markers, which is how unillm (and llama.cpp's server, and
vLLM's parsers) recognise the format. They are written for this project, after the layout of
the public templates: Qwen 2.5 (Hermes ``<tool_call>``), Llama 3.1/3.2 (JSON with
``"parameters"``), Mistral v3 (``[TOOL_CALLS]``). Turns end with the test tokenizer's own
end-of-sequence token, which is what the model emits to end its reply.
"""

from __future__ import annotations

# Every character of output is written by an expression ({{- '...' }}); the source's own
# whitespace is stripped ({%- ... %}), so the templates render the same under any Jinja
# whitespace settings (transformers', llama.cpp's minja, vLLM's).
HERMES = r"""
{{- bos_token }}
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
    {{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and ' }}
    {{- 'arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n' }}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' }}
    {{- eos_token + '\n' }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + eos_token + '\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + eos_token + '\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}
        {%- if message.content %}{{- message.content }}{%- endif %}
        {%- for tool_call in message.tool_calls or [] %}
            {%- set call = tool_call.function if tool_call.function is defined else tool_call %}
            {%- if message.content or not loop.first %}{{- '\n' }}{%- endif %}
            {{- '<tool_call>\n{"name": "' + call.name + '", "arguments": ' }}
            {{- call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- eos_token + '\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- eos_token + '\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""

LLAMA3_JSON = r"""
{{- bos_token }}
{%- if messages[0].role == 'system' %}
    {%- set system = messages[0].content %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system = '' %}
{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}
{%- if tools %}{{- 'Environment: ipython\n' }}{%- endif %}
{{- system + eos_token }}
{%- for message in messages %}
    {%- if tools and loop.first and message.role == 'user' %}
        {{- '<|start_header_id|>user<|end_header_id|>\n\n' }}
        {{- 'Given the following functions, please respond with a JSON for a function call ' }}
        {{- 'with its proper arguments that best answers the given prompt.\n\n' }}
        {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
        {{- ' Do not use variables.\n\n' }}
        {%- for tool in tools %}{{- tool | tojson(indent=4) }}{{- '\n\n' }}{%- endfor %}
        {{- message.content + eos_token }}
    {%- elif message.role == 'assistant' and message.tool_calls %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
        {%- for tool_call in message.tool_calls %}
            {%- set call = tool_call.function if tool_call.function is defined else tool_call %}
            {%- if not loop.first %}{{- '; ' }}{%- endif %}
            {{- '{"name": "' + call.name + '", "parameters": ' }}
            {{- call.arguments | tojson }}
            {{- '}' }}
        {%- endfor %}
        {{- eos_token }}
    {%- elif message.role == 'tool' or message.role == 'ipython' %}
        {{- '<|start_header_id|>ipython<|end_header_id|>\n\n' + message.content + eos_token }}
    {%- else %}
        {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' }}
        {{- message.content + eos_token }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

MISTRAL = r"""
{{- bos_token }}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {%- if tools and loop.last %}
            {{- '[AVAILABLE_TOOLS] ' }}{{- tools | tojson }}{{- '[/AVAILABLE_TOOLS]' }}
        {%- endif %}
        {{- '[INST] ' + message.content + '[/INST]' }}
    {%- elif message.role == 'system' %}
        {{- '[INST] ' + message.content + '[/INST]' }}
    {%- elif message.role == 'assistant' %}
        {%- if message.tool_calls %}
            {{- '[TOOL_CALLS] [' }}
            {%- for tool_call in message.tool_calls %}
                {%- set call = tool_call.function if tool_call.function is defined else tool_call %}
                {{- '{"name": "' + call.name + '", "arguments": ' }}
                {{- call.arguments | tojson }}
                {{- ', "id": "' + tool_call.id + '"}' }}
                {%- if not loop.last %}{{- ', ' }}{%- endif %}
            {%- endfor %}
            {{- ']' }}
        {%- else %}
            {{- ' ' + message.content }}
        {%- endif %}
        {{- eos_token }}
    {%- elif message.role == 'tool' %}
        {{- '[TOOL_RESULTS] {"content": ' }}{{- message.content | tojson }}
        {{- ', "call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- endif %}
{%- endfor %}
"""

TEMPLATES = {"hermes": HERMES, "llama3_json": LLAMA3_JSON, "mistral": MISTRAL}

TOOL_PRESETS: dict[str, tuple[str, str]] = {
    # preset: (the preset whose weights and tokenizer it shares, its chat template)
    "qwen2-tools": ("qwen2-tiny", "hermes"),
    "llama-tools": ("llama-tiny", "llama3_json"),
    "mistral-tools": ("llama-tiny", "mistral"),
}
"""Test models whose chat templates render tools: the same weights and tokenizer as their
base preset (so their greedy tokens for a given prompt are the base's), another template."""
