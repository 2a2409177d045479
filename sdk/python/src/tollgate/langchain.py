"""LangChain tools behind the gate (the `langchain` extra).

`guarded_tool(tool, client, intent_of)` is a LangChain tool with the same
name, description and arguments as `tool` that runs it only on a verified
PERMIT for `intent_of(arguments)`. A refusal (DENY, SILENCE, a gate down, an
answer that does not verify) is a `ToolException` the agent sees as the
tool's answer, naming the decision and the receipt; the tool never runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException

from tollgate.client import AsyncClient, Client, Refusal


def guarded_tool(
    tool: BaseTool,
    client: Client,
    intent_of: Callable[[dict[str, Any]], Mapping[str, Any]],
    *,
    async_client: AsyncClient | None = None,
) -> StructuredTool:
    """`tool`, run only on a verified PERMIT for `intent_of(arguments)`."""

    def run(**arguments: Any) -> Any:
        try:
            client.decide(intent_of(arguments))
        except Refusal as e:
            raise ToolException(f"Tollgate refused {tool.name}: {e}") from e
        return tool.invoke(arguments)

    async def arun(**arguments: Any) -> Any:
        try:
            if async_client is not None:
                await async_client.decide(intent_of(arguments))
            else:
                client.decide(intent_of(arguments))
        except Refusal as e:
            raise ToolException(f"Tollgate refused {tool.name}: {e}") from e
        return await tool.ainvoke(arguments)

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        infer_schema=False,
        handle_tool_error=True,
    )
