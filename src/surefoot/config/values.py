"""The vocabulary every settings class of surefoot.toml is built of: the value types
(durations, sizes, env file keys, ports, URLs), the strict base model (unknown keys are
errors; settings are frozen) and :class:`PhaseSettings`, the base of each phase's table.
:mod:`surefoot.config.settings` re-exports them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from surefoot.base.units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
EnvKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Positive = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
HttpURL = Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
JsonValue = str | int | float | bool
ServiceName = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=False)


class PhaseSettings(Strict):
    enabled: bool = True

    @property
    def configured(self) -> bool:
        """An optional phase (names.PHASES) is part of the pipeline when its settings say so."""
        return True
