"""Outbound address classification, literal forms, and ALLOWED_OUTBOUND_HOSTS parsing."""

from __future__ import annotations

import ipaddress

import pytest

from service.config import Config
from service.execution.outbound import (
    Policy,
    Refused,
    check_literal,
    forbidden_reason,
    literal_address,
    parse_allowed,
    resolve_checked,
)

FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.1.1", "link_local"),
    ("169.254.169.254", "metadata"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("0.0.0.0", "unspecified"),  # noqa: S104  (an address to classify, not a bind)
    ("0.1.2.3", "private"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "private"),  # documentation
    ("198.18.0.1", "private"),  # benchmarking
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link_local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fd00:ec2::254", "metadata"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback_embedded_in_ipv6"),
    ("::ffff:10.0.0.1", "private_embedded_in_ipv6"),
    ("::ffff:169.254.169.254", "metadata_embedded_in_ipv6"),
    ("::ffff:100.64.0.1", "shared_embedded_in_ipv6"),
    ("64:ff9b::7f00:1", "loopback_embedded_in_ipv6"),  # NAT64 of 127.0.0.1
    ("2002:7f00:1::", "loopback_embedded_in_ipv6"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::", "metadata_embedded_in_ipv6"),  # 6to4 of 169.254.169.254
    ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
    ("2001:db8::1", "private"),  # documentation
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_internal_addresses_are_classified(address: str, reason: str) -> None:
    """Each kind of internal address gets its reason."""
    assert reason == forbidden_reason(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_not_forbidden(address: str) -> None:
    """Public addresses (also just outside the CGNAT range, and mapped) pass."""
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # http://2130706433/
        ("0x7f.1", "127.0.0.1"),  # http://0x7f.1/
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("127.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_literal_forms_are_read_as_the_address_they_name(host: str, address: str) -> None:
    """Every numeric form the C library accepts is the address it names."""
    assert ipaddress.ip_address(address) == literal_address(host)


@pytest.mark.parametrize("host", ["localhost", "example.com", "deadbeef", "a.b", "x0x7f"])
def test_names_are_not_literals(host: str) -> None:
    """Host names are left to the resolver."""
    assert literal_address(host) is None


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "[::1]", "::ffff:7f00:1", "0"])
def test_literal_internal_hosts_are_refused(host: str) -> None:
    """The literal check refuses them without any DNS."""
    with pytest.raises(Refused) as refused:
        check_literal(host, 80, Policy())
    assert refused.value.literal
    assert "ALLOWED_OUTBOUND_HOSTS" in str(refused.value)


async def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    """A name is refused for what it resolves to, and the resolved address is not shown."""
    with pytest.raises(Refused) as refused:
        await resolve_checked("localhost", 80, Policy())
    assert refused.value.reason == "loopback"
    assert "'localhost' resolves to a loopback address" in str(refused.value)
    assert "address" not in refused.value.details()


async def test_allowed_names_addresses_and_networks() -> None:
    """A listed name, address (optionally with a port) or CIDR is allowed; nothing else."""
    assert await resolve_checked("localhost", 80, Policy.of(["localhost"]))
    assert await resolve_checked("localhost", 8080, Policy.of(["LOCALHOST.:8080"]))
    with pytest.raises(Refused):
        await resolve_checked("localhost", 8081, Policy.of(["localhost:8080"]))
    loop4, loop6 = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    Policy.of(["127.0.0.0/8", "::1"]).check("localhost", 1, [loop4, loop6])
    Policy.of(["127.0.0.1:5000"]).check("127.0.0.1", 5000, [loop4])
    Policy.of(["[::1]:5000"]).check("::1", 5000, [loop6])
    # The IPv4-mapped form of an allowed IPv4 address is that address.
    Policy.of(["127.0.0.1"]).check("::ffff:127.0.0.1", 1, [ipaddress.ip_address("::ffff:7f00:1")])
    for policy, host, port, address in (
        (Policy.of(["127.0.0.1:5000"]), "127.0.0.1", 5001, loop4),
        (Policy.of(["127.0.0.1"]), "::1", 80, loop6),  # another address
        (Policy.of(["10.0.0.0/8"]), "127.0.0.1", 80, loop4),
        (Policy.of(["localhost"]), "127.0.0.1", 80, loop4),  # a name allows only that name
        (Policy.of(["::/0"]), "127.0.0.1", 80, loop4),  # an IPv6 network holds no IPv4
    ):
        with pytest.raises(Refused):
            policy.check(host, port, [address])
    # Every address must pass: one internal address among public ones is refused.
    with pytest.raises(Refused):
        Policy().check("mixed.example", 80, [ipaddress.ip_address("8.8.8.8"), loop4])


@pytest.mark.parametrize(
    "text",
    ["host:port", "10.0.0.0/33", "[::1", "[::1]x", "a b", "host:0", "host:70000", "2130706433"],
)
def test_malformed_entries_are_refused_at_start(text: str) -> None:
    """A bad ALLOWED_OUTBOUND_HOSTS stops the process with a message naming the variable."""
    with pytest.raises(ValueError, match=r"."):
        parse_allowed(text)
    with pytest.raises(SystemExit, match="ALLOWED_OUTBOUND_HOSTS"):
        Config.from_env({"ALLOWED_OUTBOUND_HOSTS": text})


def test_the_variable_is_read_into_the_config() -> None:
    """Comma-separated, spaces ignored; empty by default (only public addresses)."""
    assert () == Config.from_env({}).allowed_outbound_hosts
    config = Config.from_env(
        {"ALLOWED_OUTBOUND_HOSTS": " runtime.internal:8081, 127.0.0.1 ,[::1]:9000,10.0.0.0/8,"}
    )
    assert (
        "runtime.internal:8081",
        "127.0.0.1",
        "[::1]:9000",
        "10.0.0.0/8",
    ) == config.allowed_outbound_hosts
