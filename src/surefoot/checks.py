"""The machine checks of preflight: each measures one thing against its threshold.

The judging functions are pure (measured value and threshold in, a
:class:`CheckResult` out) and unit-tested on both sides of every threshold; the
measuring functions read this machine.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from surefoot.units import format_size

SUPPORTED_OS = {"ubuntu": 20, "debian": 11}


@dataclass(frozen=True)
class CheckResult:
    name: str
    result: str  # pass | warn | fail
    measured: str
    threshold: str = ""
    advice: str = ""

    def line(self) -> str:
        text = f"{self.name}: {self.result} ({self.measured}"
        text += f"; needs {self.threshold})" if self.threshold else ")"
        return text + (f" - {self.advice}" if self.advice and self.result != "pass" else "")


# -- judging --------------------------------------------------------------------------
def judge_minimum(name: str, measured: float, minimum: float, shown: str, needed: str,
                  severity: str = "fail", advice: str = "") -> CheckResult:
    return CheckResult(name, "pass" if measured >= minimum else severity, shown, needed, advice)


def judge_memory(available: int, minimum: int) -> CheckResult:
    return judge_minimum("memory", available, minimum, f"{format_size(available)} available",
                         f">= {format_size(minimum)}", advice="stop other services or add memory")


def judge_disk(free: int, minimum: int, path: str) -> CheckResult:
    return judge_minimum("disk", free, minimum, f"{format_size(free)} free on {path}",
                         f">= {format_size(minimum)}", advice="free space (docker system prune) or grow the disk")


def judge_cpus(count: int, minimum: int) -> CheckResult:
    return judge_minimum("cpus", count, minimum, f"{count} CPUs", f">= {minimum}", severity="warn",
                         advice="builds and start-up will be slow")


def judge_os(os_id: str, version: str) -> CheckResult:
    shown = f"{os_id} {version}".strip() or "unknown"
    needed = ", ".join(f"{name} >= {major}" for name, major in SUPPORTED_OS.items())
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = -1
    ok = os_id in SUPPORTED_OS and major >= SUPPORTED_OS[os_id]
    return CheckResult("os", "pass" if ok else "fail", shown, needed,
                       "surefoot installs and supports Debian and Ubuntu; --skip-check os to go on anyway")


def judge_clock(local: dt.datetime, reference: dt.datetime | None, max_skew: float) -> CheckResult:
    if local.year < 2024:
        return CheckResult("clock", "fail", f"the clock says {local:%Y-%m-%d}", "a real date",
                           "set the time (timedatectl set-ntp true)")
    if reference is None:
        return CheckResult("clock", "pass", f"{local:%Y-%m-%d %H:%M:%S} UTC (nothing to compare with)")
    skew = abs((local - reference).total_seconds())
    return CheckResult("clock", "pass" if skew <= max_skew else "warn", f"{skew:.1f}s off the Docker engine's",
                       f"<= {max_skew:g}s", "TLS and logs need a correct clock: enable NTP")


def judge_ports(wanted: Iterable[tuple[str, int]], busy: set[tuple[str, int]],
                ours: set[int]) -> CheckResult:
    taken = [f"{host or '*'}:{port}" for host, port in wanted if (host, port) in busy and port not in ours]
    listed = ", ".join(f"{h or '*'}:{p}" for h, p in wanted) or "none"
    if taken:
        return CheckResult("ports", "fail", f"in use by another process: {', '.join(taken)}", "free",
                           "stop what listens there, or change the published port")
    return CheckResult("ports", "pass", f"free or held by this project: {listed}")


def judge_dns(domain: str, records: list[str] | None, public: str | None) -> CheckResult:
    if records is None:
        return CheckResult("dns", "fail", f"{domain} has no A record", f"an A record for {domain}",
                           f"create an A record: {domain} -> this server's public address")
    if public is None:
        return CheckResult("dns", "warn", f"{domain} -> {', '.join(records)}; this server's public "
                           "address could not be learnt", "", "check the record by hand")
    if public in records:
        return CheckResult("dns", "pass", f"{domain} -> {public}")
    if _behind_nat():
        return CheckResult("dns", "warn", f"{domain} -> {', '.join(records)}, public address {public}",
                           "", "this server is behind NAT: make sure the router forwards to it")
    return CheckResult("dns", "fail", f"{domain} -> {', '.join(records)}, but this server is {public}",
                       f"{domain} -> {public}", f"point the A record of {domain} at {public}")


def judge_registry(host: str, status: int | None, error: str | None) -> CheckResult:
    if status is None:
        return CheckResult("registry", "fail", f"{host} does not answer ({error})", "reachable over HTTPS",
                           "images that must be pulled cannot be; check the firewall and DNS")
    if status >= 500:
        return CheckResult("registry", "warn", f"{host} answers HTTP {status}", "a working registry")
    return CheckResult("registry", "pass", f"{host} answers (HTTP {status})")


# -- measuring ------------------------------------------------------------------------
def available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_disk(path: str) -> int:
    return shutil.disk_usage(path).free


def os_release(path: Path = Path("/etc/os-release")) -> tuple[str, str]:
    values: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value.strip().strip('"')
    except OSError:
        pass
    return values.get("ID", ""), values.get("VERSION_ID", "")


def busy_ports(wanted: Iterable[tuple[str, int]], settle: float = 1.5) -> set[tuple[str, int]]:
    """The (host, port) pairs that cannot be bound. A port found busy is tried again for up to
    ``settle`` seconds: the engine's port proxy lingers a moment after `compose down`."""

    def busy(host: str, port: int) -> bool:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host or "0.0.0.0", port))
            except OSError:
                return True
            return False

    found = {(host, port) for host, port in wanted if busy(host, port)}
    deadline = time.monotonic() + settle
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = {(host, port) for host, port in found if busy(host, port)}
    return found


def resolve(domain: str) -> list[str] | None:
    try:
        infos = socket.getaddrinfo(domain, None, socket.AF_INET)
    except OSError:
        return None
    return sorted({str(info[4][0]) for info in infos})


def public_address(url: str, timeout: float = 5.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read(100).decode().strip()
        return str(ipaddress.ip_address(text))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def registry_status(host: str, timeout: float = 5.0) -> tuple[int | None, str | None]:
    try:
        with urllib.request.urlopen(f"https://{host}/v2/", timeout=timeout) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def _behind_nat() -> bool:
    """True when none of this machine's own IPv4 addresses is a public one."""
    try:
        addresses = socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return True
    return not any(ipaddress.ip_address(a).is_global for a in addresses)
