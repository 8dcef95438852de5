"""Outbound safety: calls made on behalf of users never reach internal addresses.

`api_call` blocks and the block runtime connect where a tenant's block config
(or the operator's runtime URL) says. Without a guard, a tenant could make the
service call its own loopback, the private network, or a cloud metadata
endpoint and read the answer in a test result. So every destination is resolved
first, and refused when ANY of its addresses is loopback, private, link-local,
multicast, reserved, unspecified, shared (CGNAT, 100.64.0.0/10), an IPv4
address embedded in IPv6 (mapped, NAT64, 6to4) of those, or a metadata address
(169.254.169.254, fd00:ec2::254), unless the operator allows it.

`ALLOWED_OUTBOUND_HOSTS` (comma-separated) lists what is allowed anyway:

- `name` or `name:port`: a host name as written in URLs (`runtime.internal`,
  `localhost:8081`); every address it resolves to is allowed (on that port).
- `address` or `address:port`: an IP address (`127.0.0.1`, `[::1]:9000`);
  that address is allowed, whatever name resolved to it.
- `network/prefix`: a CIDR (`10.0.0.0/8`, `fd00::/8`): every address in it.

The check and the connection use the same addresses: the guarded session's
resolver (`GuardedResolver`, an aiohttp `AbstractResolver`) resolves, checks
and returns only the checked addresses, so the connector connects to exactly
what was checked (a DNS answer that changes between check and connect, "DNS
rebinding", cannot slip through). Addresses written in the URL itself skip
aiohttp's resolver, so `check_literal` checks them before the request.
Redirects are never followed by the callers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "Policy",
    "Refused",
    "check_literal",
    "client_session",
    "forbidden_reason",
    "literal_address",
    "parse_allowed",
    "policy_of",
    "resolve_checked",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

VARIABLE = "ALLOWED_OUTBOUND_HOSTS"
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_V4 = re.compile(r"[0-9A-Fa-fXx.]+")
_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


class Refused(OSError):
    """A destination the operator has not allowed: `reason` says which kind of address."""

    def __init__(self, host: str, address: IPAddress, reason: str, *, literal: bool) -> None:
        # The address itself is only shown when the URL named it: a resolved
        # address would tell a tenant how internal names resolve.
        where = f"{address} is" if literal else f"{host!r} resolves to"
        super().__init__(
            f"{where} {_describe(reason)}; outbound calls to internal "
            f"addresses are refused unless the operator lists them in {VARIABLE}"
        )
        self.host = host
        self.address = address
        self.reason = reason
        self.literal = literal

    def details(self) -> dict[str, Any]:
        """Facts for a test result (never a resolved address)."""
        facts: dict[str, Any] = {"host": self.host, "address_kind": self.reason}
        if self.literal:
            facts["address"] = str(self.address)
        return facts


def _describe(reason: str) -> str:
    """`loopback` -> `a loopback address`, `private_embedded_in_ipv6` -> `an IPv6 address ...`."""
    inner, embedded, _ = reason.partition("_embedded_in_ipv6")
    words = inner.replace("_", " ")
    text = f"{'an' if words[0] in 'aeiou' else 'a'} {words} address"
    return f"an IPv6 address embedding {text}" if embedded else text


def forbidden_reason(address: IPAddress) -> str | None:
    """Why an address is internal (`loopback`, `private`, ...), or None for a public one."""
    if address in METADATA:
        return "metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            return f"{inner}_embedded_in_ipv6" if inner is not None else None
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link_local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared", isinstance(address, ipaddress.IPv4Address) and address in _SHARED),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for reason, hit in checks:
        if hit:
            return reason
    # Documentation, benchmarking and other special-purpose ranges.
    return None if address.is_global else "non_global"


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally (any form the C library accepts), or None.

    `[::1]`, `::ffff:127.0.0.1`, `fe80::1%eth0`, `127.0.0.1`, and the legacy
    IPv4 forms `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`.
    """
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(text) and any(c.isdigit() for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class Policy:
    """What is allowed besides public addresses (see the module's docstring)."""

    names: frozenset[tuple[str, int | None]] = frozenset()
    addresses: frozenset[tuple[IPAddress, int | None]] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def of(cls, entries: Iterable[str]) -> Policy:
        """The policy of `ALLOWED_OUTBOUND_HOSTS` entries; ValueError names a bad one."""
        names: set[tuple[str, int | None]] = set()
        addresses: set[tuple[IPAddress, int | None]] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            kind, value, port = _parse_entry(entry)
            if kind == "network":
                networks.append(ipaddress.ip_network(value, strict=False))
            elif kind == "address":
                addresses.add((ipaddress.ip_address(value), port))
            else:
                names.add((value, port))
        return cls(frozenset(names), frozenset(addresses), tuple(networks))

    def allows_name(self, host: str, port: int) -> bool:
        """Is this host name (as written in the URL) listed, for this port?"""
        name = _normal_name(host)
        return (name, None) in self.names or (name, port) in self.names

    def allows_address(self, address: IPAddress, port: int) -> bool:
        """Is this address listed (itself, for this port, or in a listed network)?"""
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            (a, None) in self.addresses
            or (a, port) in self.addresses
            or any(a.version == n.version and a in n for n in self.networks)
            for a in candidates
        )

    def check(self, host: str, port: int, addresses: Iterable[IPAddress]) -> None:
        """Raise `Refused` unless every address is public or allowed."""
        literal = literal_address(host) is not None
        if not literal and self.allows_name(host, port):
            return
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None and not self.allows_address(address, port):
                raise Refused(host, address, reason, literal=literal)


def _normal_name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _parse_entry(entry: str) -> tuple[str, str, int | None]:
    """`(kind, value, port)` of one entry: kind is `network`, `address` or `name`."""
    if "/" in entry:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as error:
            msg = f"{entry!r} is not a CIDR network ({error})"
            raise ValueError(msg) from error
        return "network", entry, None
    host, port = entry, None
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            msg = f"{entry!r} is not [ipv6] or [ipv6]:port"
            raise ValueError(msg)
        port = _port(entry, rest[1:]) if rest else None
    elif entry.count(":") == 1:
        host, _, raw_port = entry.partition(":")
        port = _port(entry, raw_port)
    try:
        return "address", str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    if not _NAME.fullmatch(host.rstrip(".")):
        msg = f"{entry!r} is not a host name, host:port, IP address or CIDR"
        raise ValueError(msg)
    if literal_address(host) is not None:
        msg = f"{entry!r}: write the address in dotted form (like 127.0.0.1)"
        raise ValueError(msg)
    return "name", _normal_name(host), port


def _port(entry: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        msg = f"{entry!r} has no valid port (1..65535)"
        raise ValueError(msg)
    return int(raw)


def parse_allowed(text: str) -> tuple[str, ...]:
    """`ALLOWED_OUTBOUND_HOSTS` as a tuple of entries; ValueError when one is malformed."""
    entries = tuple(part.strip() for part in text.split(",") if part.strip())
    Policy.of(entries)
    return entries


def check_literal(host: str, port: int, policy: Policy) -> None:
    """Refuse a URL host that is itself an internal address (these skip the resolver)."""
    address = literal_address(host)
    if address is not None:
        policy.check(host, port, [address])


async def resolve_checked(
    host: str, port: int, policy: Policy, family: int = socket.AF_UNSPEC
) -> list[ResolveResult]:
    """Resolve `host`; raise `Refused` if any of its addresses is internal and not allowed."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
    results: list[ResolveResult] = []
    checked: list[IPAddress] = []
    for info_family, _, proto, _, sockaddr in infos:
        if info_family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0]).split("%", 1)[0]
        checked.append(ipaddress.ip_address(text))
        results.append(
            ResolveResult(
                hostname=host,
                host=str(sockaddr[0]),
                port=int(sockaddr[1]),
                family=info_family,
                proto=proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
        )
    if not results:
        msg = f"{host!r} has no IPv4 or IPv6 address"
        raise OSError(msg)
    policy.check(host, port, checked)
    return results


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that returns only checked addresses (so they are the ones used)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve and check; `Refused` (an OSError) makes aiohttp's connect fail."""
        return await resolve_checked(host, port, self.policy, family)

    async def close(self) -> None:
        """Nothing to release."""


_POLICIES: weakref.WeakKeyDictionary[aiohttp.ClientSession, Policy] = weakref.WeakKeyDictionary()


def client_session(allowed: Iterable[str], **options: Any) -> aiohttp.ClientSession:
    """A client session that connects only to public or allowed addresses.

    `allowed`: `ALLOWED_OUTBOUND_HOSTS` entries. `options` go to `ClientSession`.
    Use it as `async with client_session(...) as session:`.
    """
    policy = Policy.of(allowed)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy))
    session = aiohttp.ClientSession(connector=connector, trust_env=False, **options)
    _POLICIES[session] = policy
    return session


def policy_of(session: aiohttp.ClientSession) -> Policy | None:
    """The policy of a session made by `client_session`, else None (an unguarded session)."""
    return _POLICIES.get(session)
