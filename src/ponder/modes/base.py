"""What a mode is asked to do, resolved from request fields and config.

The request names a mode explicitly (`mode`), or implies one: a `reasoning_effort`
of "none" means Instant, any other effort or a `thinking_budget` means Thinking.
With neither, the configured default applies: Auto unless config says otherwise. A
mode never looks at model names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.config import EFFORT_BUDGETS, MODE_NAMES, ModeName, ModeSettings
from ponder.errors import InvalidRequest, Unsupported
from ponder.modes.steer import Steer
from ponder.tools.base import Toolbox
from ponder.types import ChatRequest

MODES: tuple[ModeName, ...] = MODE_NAMES


@dataclass(frozen=True)
class ModeRequest:
    chat: ChatRequest
    mode: ModeName
    budget: int  # reasoning tokens for one chain of thought
    compression: bool = True
    probe_every: int = 64
    agents: int = 4
    agent_budget: int = 512
    strategy: str = "auto"
    agent_timeout_s: float = 600.0
    programs: bool = True  # programs for questions with numbers: Thinking's and Auto's (modes.computed), agents
    auto_confidence: float = 0.0  # Auto: escalate an answer less confident than this
    toolbox: Toolbox = field(default_factory=Toolbox)  # server-side tools; their functions are in chat.tools
    steer: Steer = field(default_factory=Steer)  # the client's controls on the running request (`modes.steer`)


def resolve(
    chat: ChatRequest,
    settings: ModeSettings,
    *,
    mode: str | None = None,
    effort: str | None = None,
    budget: int | None = None,
    compression: bool | None = None,
    agents: int | None = None,
    agent_budget: int | None = None,
    strategy: str | None = None,
    toolbox: Toolbox | None = None,
) -> ModeRequest:
    if mode is not None and mode not in MODES:
        raise InvalidRequest(f"unknown mode {mode!r}: use one of {', '.join(MODES)}", param="mode")
    if effort is not None and effort not in EFFORT_BUDGETS:
        raise InvalidRequest(f"unknown reasoning_effort {effort!r}: use one of {', '.join(EFFORT_BUDGETS)}",
                             param="reasoning_effort")  # fmt: skip
    chosen = mode or _implied_mode(effort, budget) or settings.default
    requested = budget if budget is not None else (EFFORT_BUDGETS[effort] if effort else None)
    budget = requested if requested is not None else EFFORT_BUDGETS[settings.effort]
    if chosen == "thinking" and budget == 0:
        chosen = "instant"  # "think with no budget" is an instant answer
    toolbox = toolbox or Toolbox()
    client_tools = [t for t in chat.tools if t.name not in toolbox.hosted]
    if chosen == "auto" and client_tools and chat.tool_choice != "none":
        chosen = "instant"  # a turn that may call the client's functions is theirs to answer; it never escalates
    if chosen == "contemplating" and client_tools and chat.tool_choice != "none":
        raise Unsupported("the client's own function tools are not supported in Contemplating mode (server-side "
                          "tools are); use instant or thinking", param="tools")  # fmt: skip
    return ModeRequest(
        chat=chat,
        mode=chosen,  # type: ignore[arg-type]
        budget=budget,
        compression=settings.compression if compression is None else compression,
        probe_every=settings.probe_every,
        agents=agents or settings.agents,
        agent_budget=agent_budget or requested or EFFORT_BUDGETS[settings.agent_effort],
        strategy=strategy or settings.strategy,
        agent_timeout_s=settings.agent_timeout_s,
        programs=settings.programs,
        auto_confidence=settings.auto_confidence,
        toolbox=toolbox,
    )


def _implied_mode(effort: str | None, budget: int | None) -> str | None:
    if effort == "none" or budget == 0:
        return "instant"
    if effort is not None or budget is not None:
        return "thinking"
    return None
