"""Running cells in a real ipykernel and reading back what a notebook would show."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CellOutput:
    """What one execution put on the notebook: streams, displays (with updates), errors."""

    status: str = ""
    stdout: str = ""
    stderr: str = ""
    displays: list[dict[str, Any]] = field(default_factory=list)  # display_data messages
    updates: list[dict[str, Any]] = field(default_factory=list)  # update_display_data
    errors: list[dict[str, Any]] = field(default_factory=list)

    def hook(self, msg: dict[str, Any]) -> None:
        kind = msg["header"]["msg_type"]
        content = msg["content"]
        if kind == "stream":
            if content["name"] == "stdout":
                self.stdout += content["text"]
            else:
                self.stderr += content["text"]
        elif kind == "display_data":
            self.displays.append(content)
        elif kind == "update_display_data":
            self.updates.append(content)
        elif kind == "error":
            self.errors.append(content)

    def final_display(self, mime: str = "text/plain") -> str:
        """The content a display shows once every update has landed (the last one drawn)."""
        shown = (self.updates or self.displays)[-1]
        return str(shown["data"].get(mime, ""))

    def everything(self) -> str:
        texts = [self.stdout, self.stderr]
        for d in self.displays + self.updates:
            texts.extend(str(v) for v in d["data"].values())
        for e in self.errors:
            texts.extend([e["ename"], e["evalue"], *e["traceback"]])
        return "\n".join(texts)


def kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECODE_")}
    env.update(extra)
    return env
