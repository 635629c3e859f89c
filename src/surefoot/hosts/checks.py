"""The machine checks of preflight: each measures one thing against its threshold.

The judging functions are pure (measured value and threshold in, a
:class:`CheckResult` out) and unit-tested on both sides of every threshold; the
measuring functions are commands and file reads through a :class:`~surefoot.hosts.Host`,
with pure parsers. (DNS and the registry are asked from here, as a browser would.)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from surefoot.base.errors import CommandNotFound, CommandTimeout
from surefoot.base.units import format_size
from surefoot.hosts.base import Host

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


def judge_memory(available: int | None, minimum: int) -> CheckResult:
    if available is None:
        return CheckResult("memory", "warn", "could not be measured (/proc/meminfo)", f">= {format_size(minimum)}")
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


def judge_dns(domain: str, records: list[str] | None, public: str | None, behind_nat: bool) -> CheckResult:
    """The domain's A record against the server's public address (``behind_nat``: the server has
    no public address of its own, so a router may forward the record's to it)."""
    if records is None:
        return CheckResult("dns", "fail", f"{domain} has no A record", f"an A record for {domain}",
                           f"create an A record: {domain} -> this server's public address")
    if public is None:
        return CheckResult("dns", "warn", f"{domain} -> {', '.join(records)}; this server's public "
                           "address could not be learnt", "", "check the record by hand")
    if public in records:
        return CheckResult("dns", "pass", f"{domain} -> {public}")
    if behind_nat:
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


def registry_host(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "registry-1.docker.io"


# -- measuring: commands and file reads through the host, and their pure parsers ---------
def parse_meminfo(text: str) -> int | None:
    """Bytes available, from ``/proc/meminfo`` (MemAvailable; MemFree on old kernels)."""
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key.strip()] = int(parts[0]) * 1024
    return fields.get("MemAvailable", fields.get("MemFree"))


def available_memory(host: Host) -> int | None:
    """Bytes available on the host; None when it cannot be read."""
    try:
        return parse_meminfo(host.read_text("/proc/meminfo"))
    except OSError:
        return None


def parse_df(stdout: str) -> int | None:
    """The number under ``df -B1 --output=avail``'s heading."""
    lines = stdout.split()
    return int(lines[-1]) if len(lines) >= 2 and lines[-1].isdigit() else None


def free_disk(host: Host, path: str) -> int:
    """Bytes free for an ordinary user on the file system of ``path``. Raises OSError."""
    try:
        result = host.run(["df", "-B1", "--output=avail", path], timeout=30)
    except CommandNotFound as exc:
        raise OSError(0, f"{exc}") from None
    free = parse_df(result.stdout) if result.returncode == 0 else None
    if free is None:
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "df gave no answer"
        raise OSError(0, message.removeprefix("df: ").removeprefix(f"{path}: ").removeprefix(f"'{path}': "))
    return free


def cpu_count(host: Host) -> int:
    """``nproc`` (the CPUs this process may use); 1 when it cannot tell."""
    try:
        text = host.run(["nproc"], timeout=30).stdout.strip()
    except CommandNotFound:
        return 1
    return int(text) if text.isdigit() and int(text) > 0 else 1


def parse_os_release(text: str) -> tuple[str, str]:
    """(ID, VERSION_ID) of an ``/etc/os-release``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values.get("ID", ""), values.get("VERSION_ID", "")


def os_release(host: Host) -> tuple[str, str]:
    try:
        return parse_os_release(host.read_text("/etc/os-release"))
    except OSError:
        return "", ""


def _address(hex_text: str) -> str:
    """An address of ``/proc/net/tcp`` (4-byte words, each in the host's byte order: little-endian)."""
    raw = bytes.fromhex(hex_text)
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(swapped))


def parse_listening(text: str) -> set[tuple[str, int]]:
    """(address, port) of every listening socket in a ``/proc/net/tcp`` or ``tcp6`` table."""
    found = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
            continue
        address, _, port = fields[1].partition(":")
        try:
            found.add((_address(address), int(port, 16)))
        except ValueError:
            continue
    return found


_ANY = {"", "0.0.0.0", "::"}


def busy_among(wanted: Iterable[tuple[str, int]], listening: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """The wanted (host, port) pairs a listener already holds: one on the same address, or on
    every address; a wanted "every address" is held by a listener on any address."""
    busy = set()
    for host, port in wanted:
        for address, listened in listening:
            if listened != port:
                continue
            mapped = address.removeprefix("::ffff:")
            if host in _ANY or address in _ANY or mapped == host or address == host:
                busy.add((host, port))
                break
    return busy


def listening_ports(host: Host) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            found |= parse_listening(host.read_text(table))
        except OSError:
            continue
    return found


def busy_ports(host: Host, wanted: Iterable[tuple[str, int]], clock: Callable[[], float],
               sleep: Callable[[float], None], settle: float = 1.5) -> set[tuple[str, int]]:
    """The (host, port) pairs something listens on. A port found busy is looked at again for up
    to ``settle`` seconds: the engine's port proxy lingers a moment after `compose down`."""
    wanted = list(wanted)
    found = busy_among(wanted, listening_ports(host)) if wanted else set()
    deadline = clock() + settle
    while found and clock() < deadline:
        sleep(0.2)
        found = busy_among(found, listening_ports(host))
    return found


# Asked on the host (the server, for a remote target: its DNS, its route out, its addresses),
# with what every Debian and Ubuntu server has: getent, python3, hostname.
_HTTP_GET = """import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as answer:
        print(answer.status)
        sys.stdout.write(answer.read(200).decode("utf-8", "replace"))
except urllib.error.HTTPError as error:
    print(error.code)
except Exception as error:
    print("error")
    print(getattr(error, "reason", error))
"""


def http_get_argv(url: str, timeout: float = 5.0) -> list[str]:
    return ["python3", "-c", _HTTP_GET, url, str(timeout)]


def http_get(host: Host, url: str, timeout: float = 5.0) -> tuple[int | None, str]:
    """``url`` asked from the host: its HTTP status and the start of its body, or (None, why)."""
    try:
        result = host.run(http_get_argv(url, timeout), timeout=timeout + 10)
    except (CommandNotFound, CommandTimeout):
        return None, "no answer (python3 is needed there to ask)"
    first, _, rest = result.stdout.partition("\n")
    if first.strip().isdigit():
        return int(first.strip()), rest
    return None, rest.strip() or result.stderr.strip() or "no answer"


def resolve(host: Host, domain: str) -> list[str] | None:
    """The domain's IPv4 addresses as the host resolves them; None when it has none."""
    try:
        result = host.run(["getent", "ahostsv4", domain], timeout=15)
    except (CommandNotFound, CommandTimeout):
        return None
    found = sorted({line.split()[0] for line in result.stdout.splitlines() if line.split()})
    return found if result.returncode == 0 and found else None


def public_address(host: Host, url: str, timeout: float = 5.0) -> str | None:
    """The host's public address, as a service (``url``) that echoes it says."""
    status, body = http_get(host, url, timeout)
    try:
        return str(ipaddress.ip_address(body.strip())) if status == 200 else None
    except ValueError:
        return None


def registry_status(host: Host, registry: str, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """How ``registry`` answers the host (its /v2/ endpoint): a status, or why there is none."""
    status, body = http_get(host, f"https://{registry}/v2/", timeout)
    return (status, None) if status is not None else (None, body)


def behind_nat(host: Host) -> bool:
    """True when none of the host's own IPv4 addresses is a public one."""
    try:
        result = host.run(["hostname", "-I"], timeout=15)
    except (CommandNotFound, CommandTimeout):
        return True
    addresses = []
    for word in result.stdout.split():
        try:
            addresses.append(ipaddress.ip_address(word))
        except ValueError:
            continue
    return not any(address.version == 4 and address.is_global for address in addresses)
