"""The settings of health probes: one probe (:class:`ProbeSettings`: http, tcp, a
container's state or a command, with its expectations and timing), the health-wait gate
(:class:`HealthWaitSettings`) and verify (:class:`VerifySettings`), which run them.
:mod:`surefoot.config.settings` re-exports them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from surefoot.base.names import PROBE_KINDS
from surefoot.config.values import (
    Duration,
    HttpURL,
    JsonValue,
    PhaseSettings,
    Port,
    Positive,
    ServiceName,
    Strict,
)


class HttpExpectations(Strict):
    """What an HTTP(S) probe expects, and how it trusts TLS."""

    # One status (200), or a range written "200-399" (any answer in it passes).
    expect_status: Annotated[int, Field(ge=100, le=599)] | Annotated[str, Field(pattern=r"^[1-5]\d\d-[1-5]\d\d$")] \
        = 200
    expect_body: str | None = None
    expect_json: dict[str, JsonValue] | None = None  # {"status" = "healthy", "db.ok" = true}
    insecure: bool = False  # accept a self-signed or otherwise untrusted certificate
    ca_file: str | None = None  # trust this CA too

    @property
    def statuses(self) -> tuple[int, int]:
        """The lowest and highest status that pass."""
        if isinstance(self.expect_status, int):
            return self.expect_status, self.expect_status
        low, high = (int(part) for part in self.expect_status.split("-"))
        return low, high

    @model_validator(mode="after")
    def _check_range(self) -> HttpExpectations:
        low, high = self.statuses
        if low > high:
            raise ValueError(f"expect_status: {self.expect_status!r} runs backwards (write LOW-HIGH)")
        return self


class ProbeTiming(Strict):
    request_timeout: Duration = 5.0
    consecutive: Positive = 3
    interval: Duration = 2.0
    grace: Duration = 0.0
    timeout: Duration = 120.0
    # N: N consecutive failures of any kind end the wait; 0: only the timeout does; unset:
    # DEFAULT_ANSWER_LIMIT wrong answers in a row (the service answered, wrongly) end it.
    failure_limit: Annotated[int, Field(ge=0)] | None = None


DEFAULT_ANSWER_LIMIT = 10  # wrong answers in a row that end a gate when failure_limit is not set


class ProbeSettings(HttpExpectations, ProbeTiming):
    """One probe of a health gate. Its type follows from its keys unless ``type`` says."""

    name: str | None = None
    type: str | None = None  # a kind of names.PROBE_KINDS
    url: HttpURL | None = None
    # tcp
    host: str = "127.0.0.1"
    port: Port | None = None
    # container state, or a command (in the service's container when service is set)
    service: ServiceName | None = None
    command: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("type"):
            return data
        for kind, key in PROBE_KINDS.items():
            if data.get(key) is not None:
                return {**data, "type": kind}
        raise ValueError("a probe needs " + ", ".join(f"{key} ({kind})" for kind, key in PROBE_KINDS.items()))

    @model_validator(mode="after")
    def _check_type(self) -> ProbeSettings:
        if self.type is None:
            return self
        if self.type not in PROBE_KINDS:
            raise ValueError(f"type: {self.type!r} is not a kind of probe ({', '.join(PROBE_KINDS)})")
        if getattr(self, PROBE_KINDS[self.type]) is None:
            raise ValueError(f"a {self.type} probe needs {PROBE_KINDS[self.type]}")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return {"http": self.url, "tcp": f"{self.host}:{self.port}", "container": self.service,
                "command": self.service or "command"}.get(self.type or "") or "probe"


class HealthWaitSettings(PhaseSettings, HttpExpectations, ProbeTiming):
    url: HttpURL | None = None  # the shorthand for one HTTP probe (the original's gate), named "health"
    probes: list[ProbeSettings] = []  # more probes, each with its own timing
    fail_fast: bool = True  # end the wait when a container exits, restarts or turns unhealthy
    # engine = "swarm": how long every service must stay converged (no task failing) to pass,
    # and how long a task may wait to be placed on a node before the gate fails naming why.
    monitor: Duration = 5.0
    pending_timeout: Duration = 30.0

    def all_probes(self) -> list[ProbeSettings]:
        """The probes, each taking the top-level timing keys it does not set itself."""
        timing = {key: getattr(self, key) for key in ProbeTiming.model_fields if key in self.model_fields_set}
        probes = [p.model_copy(update={k: v for k, v in timing.items() if k not in p.model_fields_set})
                  for p in self.probes]
        if self.url:
            shorthand = self.model_dump(
                include={"url", *HttpExpectations.model_fields, *ProbeTiming.model_fields}
            )
            probes.insert(0, ProbeSettings(name="health", type="http", **shorthand))
        return probes


class VerifySettings(PhaseSettings):
    urls: list[ProbeSettings] = []  # http probes; consecutive passes as in the gate
    tls_warn_days: Annotated[int, Field(ge=0)] = 30
    containers: bool = True  # every service's containers running and healthy
    containers_timeout: Duration = 60.0  # how long containers still starting are waited for

    @property
    def configured(self) -> bool:
        return bool(self.urls)  # the verify phase runs when urls are listed
