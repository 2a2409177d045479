"""The LangChain adapter with the real gate: a guarded LangChain tool runs
only on a verified PERMIT; a refusal is the tool's answer to the agent."""

from __future__ import annotations

from typing import Any

from conftest import Gate
from langchain_core.tools import tool
from test_client import client, intent
from tollgate.langchain import guarded_tool


def test_a_guarded_langchain_tool_runs_only_on_a_permit(gate: Gate) -> None:
    paid: list[int] = []

    @tool
    def pay(amount: int, to: str) -> str:
        """Transfers `amount` EUR to account `to`."""
        paid.append(amount)
        return f"paid {amount}"

    def payment(args: dict[str, Any]) -> dict[str, Any]:
        return intent(args["amount"], f"lc-{args['amount']}")

    guarded = guarded_tool(pay, client(gate), payment)
    assert guarded.name == "pay" and guarded.args == pay.args
    assert guarded.invoke({"amount": 500, "to": "acct-1"}) == "paid 500"
    answer = guarded.invoke({"amount": 5_000_000, "to": "acct-1"})
    assert "DENY" in answer and "receipt" in answer, answer
    assert paid == [500]
