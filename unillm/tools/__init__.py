"""Tool calling (function calling) in chat: docs/tools.md.

`Generator.chat(..., tools=[...], tool_choice=...)` renders the tools with the model's chat
template, enforces required and named calls with a grammar (`constraints`), and reads the
calls the model makes (`parsing`, in the format `detect` chooses); results carry
`unillm.ToolCall`s, streams `unillm.ToolCallDelta`s. Nothing here imports an engine library.
"""

from .formats import FORMATS, PARSER_NAMES, ToolFormat
from .request import FunctionTool, ToolRequest, tool_request

__all__ = ["FORMATS", "PARSER_NAMES", "FunctionTool", "ToolFormat", "ToolRequest",
           "tool_request"]
