"""An answer's steps: what changes between one upstream request of an answer and the next,
when a step ended in `pause_turn` or called the relay's own tools. Pure, like the
translation (app/stream.py's step loop awaits; this only computes)."""

from typing import Any

from app.dialect import Answer


def next_step(answer: Answer) -> None:
    """A step ended in `pause_turn` and the relay asks again: the next response's usage
    adds to this one's, and its frames continue the same answer."""
    answer.earlier = answer.total_usage()
    answer.usage, answer.stop = {}, {}
    answer.kept = len(answer.content)
    answer.pending, answer.caller_waits = [], False
    answer.paused = answer.step_shown = False


def tools_ran(answer: Answer, results: list[dict[str, Any]]) -> None:
    """The relay ran this step's tools: the assistant's turn so far and a user turn of their
    results become earlier turns, and the next step begins a new assistant turn."""
    assistant = {"role": "assistant", "content": answer.content}
    answer.turns += [assistant, {"role": "user", "content": results}]
    answer.content = []
    next_step(answer)


def finished_for_the_caller(answer: Answer, results: list[dict[str, Any]]) -> bytes:
    """A step that called the caller's tools too ends the answer once the relay's ran: their
    results ride in `done`, for the caller to send back with its own."""
    answer.results = results
    answer.done = True
    return answer.dialect.done(answer)


def next_request(
    params: dict[str, Any], asked: list[dict[str, Any]], answer: Answer
) -> dict[str, Any]:
    """The next step's parameters: the caller's turns (`asked`), the answer's earlier steps,
    and the assistant's turn so far (a paused one, which the API continues). The last step
    allowed is asked with tool use off, so the answer ends in words."""
    turns = [*asked, *answer.turns]
    if answer.content:
        turns.append({"role": "assistant", "content": list(answer.content)})
    params = {**params, "messages": turns}
    if answer.steps + 1 >= answer.max_steps and "tools" in params:
        params["tool_choice"] = {"type": "none"}
    return params
