"""Issue 14, finding 2 (SSRF through notify_url): the address filter, with a stubbed resolver and a stubbed
connector, so nothing here opens a socket. Addresses below that are not loopback are data only."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore
import pytest

from tillpay.config import Settings
from tillpay.outbound import (
    MAX_ANSWER_BYTES,
    OutboundClient,
    OutboundError,
    Policy,
    Refused,
    excerpt,
    notify_url_problem,
)

pytestmark = pytest.mark.anyio

# Every range the filter refuses, one address each, with the name the refusal gives it.
INTERNAL = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - data: an address to refuse
    ("::", "unspecified"),
    ("10.0.0.8", "private"),  # not-contacted
    ("172.16.0.1", "private"),  # not-contacted
    ("172.31.255.254", "private"),  # not-contacted
    ("192.168.1.10", "private"),  # not-contacted
    ("fd12:3456::1", "unique-local"),
    ("fc00::1", "unique-local"),
    ("169.254.169.254", "link-local"),  # not-contacted: the cloud metadata address
    ("169.254.0.1", "link-local"),  # not-contacted
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.192", "reserved"),  # some clouds' metadata address
    ("198.18.0.1", "reserved"),
    ("2001:db8::1", "reserved"),
    ("2002:7f00:1::", "reserved"),  # 6to4 of 127.0.0.1
    ("2001:0:4136:e378::1", "reserved"),  # Teredo
    # IPv4 written as IPv6: judged as the IPv4 address it is.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),  # not-contacted
    ("::ffff:10.1.2.3", "private"),  # not-contacted
    ("64:ff9b::a01:203", "private"),  # NAT64 of 10.1.2.3  # not-contacted
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700::6810:84e5", "64:ff9b::5db8:d70e", "::ffff:1.1.1.1"]


@pytest.mark.parametrize(("address", "name"), INTERNAL)
def test_each_internal_range_is_refused_and_named(address: str, name: str) -> None:
    assert Policy().address_problem(ipaddress.ip_address(address)) == name


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert Policy().address_problem(ipaddress.ip_address(address)) is None


def test_the_operators_allow_list_opens_its_networks_and_nothing_else() -> None:
    policy = Policy.of(Settings(notify_allow_networks="10.20.0.0/16, 127.0.0.0/8"))  # not-contacted
    assert policy.address_problem(ipaddress.ip_address("10.20.3.4")) is None  # not-contacted
    assert policy.address_problem(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.address_problem(ipaddress.ip_address("10.21.0.1")) == "private"  # not-contacted
    assert policy.address_problem(ipaddress.ip_address("169.254.169.254")) == "link-local"  # not-contacted


def test_settings_refuse_a_malformed_allow_list_or_port_list() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        Settings(notify_allow_networks="10.0.0.1/8")  # not-contacted: host bits set
    with pytest.raises(ValueError, match="port"):
        Settings(notify_allow_ports="80,70000")
    assert Policy.of(Settings(notify_allow_ports="443, 9000-9002")).allow_ports == {443, 9000, 9001, 9002}


EDGE = [
    ("https://shop.example/notify", None),
    ("http://shop.example:8080/n?x=1", None),
    ("https://[2606:4700::6810:84e5]/n", None),
    ("ftp://shop.example/n", "must be an http:// or https:// URL"),
    ("gopher://shop.example:70/n", "must be an http:// or https:// URL"),
    ("file:///etc/passwd", "must be an http:// or https:// URL"),
    ("http://user:secret@shop.example/n", "must not contain a user name or password"),
    ("http://shop.example:22/n", "uses port 22; notifications go to ports 80, 443, 8080, 8443 only"),
    ("http://shop.example:6379/n", "uses port 6379"),
    ("http://127.0.0.1/n", "names a loopback address"),
    ("http://[::1]:8080/n", "names a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "names a link-local address"),  # not-contacted
    ("http://10.0.0.8/n", "names a private address"),  # not-contacted
    ("http://[::ffff:192.168.0.1]/n", "names a private address"),  # not-contacted
    ("http://shop.example/a b", "must not contain spaces"),
    ("http://shop.example/\x00", "must not contain spaces or control characters"),
    ("https://shop.example/" + "a" * 240, "is longer than 256 characters"),
]


@pytest.mark.parametrize(("url", "problem"), EDGE)
def test_the_edge_check_refuses_what_it_can_see_without_dns(url: str, problem: str | None) -> None:
    found = notify_url_problem(Settings(), url)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


def test_the_merchant_sees_a_short_printable_excerpt_only() -> None:
    assert excerpt(b"success\r\n") == "success"
    assert excerpt("a\x00b\x1b[31mc\u202ed".encode()) == "a b [31mc d"  # controls, bidi override
    assert excerpt("正常\n\t返回".encode()) == "正常 返回"
    long = excerpt(b"x" * 5000)
    assert len(long) == 200 and long.endswith("…")
    assert excerpt(b"\xff\xfe ok") == "\ufffd\ufffd ok"


# ------------------------------------------------------------------- the client, resolver and connector stubbed


class Recorder(httpcore.AsyncNetworkBackend):
    """Stands in for the network: records where it was asked to connect and what was sent, answers
    ``answer``."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess") -> None:
        self.answer = answer
        self.connects: list[tuple[str, int]] = []
        self.tls_names: list[str | None] = []
        self.sent = b""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return _Stream(self)

    async def sleep(self, seconds: float) -> None:
        pass


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.left = rec.answer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        out, self.left = self.left[:max_bytes], self.left[max_bytes:]
        return out

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.rec.sent += buffer

    async def aclose(self) -> None:
        pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        self.rec.tls_names.append(server_hostname)
        return self


def resolver(*answers: Sequence[str]) -> Any:
    """A resolver that gives ``answers`` in turn (the last one again when they run out)."""
    given = list(answers)
    asked: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return given.pop(0) if len(given) > 1 else given[0]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def client(rec: Recorder, resolve: Any, policy: Policy | None = None) -> OutboundClient:
    return OutboundClient(policy or Policy(), deadline_seconds=5, resolve=resolve, connect_with=rec)


@pytest.mark.parametrize(("address", "name"), [a for a in INTERNAL if "%" not in a[0]])
async def test_a_name_resolving_to_an_internal_address_is_refused_and_never_connected(
    address: str, name: str
) -> None:
    rec = Recorder()
    async with client(rec, resolver([address])) as c:
        with pytest.raises(Refused) as e:
            await c.post("https://merchant.example/notify", b"x=1", {})
    assert rec.connects == []
    # The merchant is told no more than that (which internal names exist stays unsaid); the log is told
    # which address and range.
    assert e.value.reason == "refused: merchant.example does not resolve to a public address"
    assert f"{ipaddress.ip_address(address)} ({name})" in e.value.detail


async def test_a_name_with_one_internal_address_among_public_ones_is_refused_whole() -> None:
    rec = Recorder()
    async with client(rec, resolver(["93.184.215.14", "169.254.169.254"])) as c:  # not-contacted
        with pytest.raises(Refused):
            await c.post("https://merchant.example/notify", b"", {})
    assert rec.connects == []


async def test_the_connection_goes_to_the_checked_address_with_the_name_in_host_and_sni() -> None:
    rec = Recorder()
    resolve = resolver(["93.184.215.14"])
    async with client(rec, resolve) as c:
        answer = await c.post(
            "https://merchant.example/alipay/notify?a=1", b"x=1", {"content-type": "text/plain"}
        )
    assert (answer.status, answer.body, answer.truncated) == (200, b"success", False)
    assert rec.connects == [("93.184.215.14", 443)]  # the checked address, not the name again
    assert rec.tls_names == ["merchant.example"]  # the certificate is checked against the name
    assert rec.sent.startswith(b"POST /alipay/notify?a=1 HTTP/1.1\r\nHost: merchant.example\r\n")


async def test_every_connection_resolves_and_checks_again_so_a_rebound_name_is_refused() -> None:
    rec = Recorder()
    resolve = resolver(["93.184.215.14"], ["127.0.0.1"])
    async with client(rec, resolve) as c:
        assert (await c.post("http://merchant.example/n", b"", {})).status == 200
        with pytest.raises(Refused):
            await c.post("http://merchant.example/n", b"", {})
    assert resolve.asked == ["merchant.example", "merchant.example"]
    assert rec.connects == [("93.184.215.14", 80)]


async def test_a_literal_address_is_checked_without_the_resolver() -> None:
    rec = Recorder()
    resolve = resolver(["93.184.215.14"])
    async with client(rec, resolve) as c:
        for url in ("http://127.0.0.1:8080/n", "http://[::1]/n", "http://169.254.169.254/"):  # not-contacted
            with pytest.raises(Refused, match="refused: the URL names a"):
                await c.post(url, b"", {})
    assert rec.connects == [] and resolve.asked == []


async def test_a_port_outside_the_allowed_ones_is_refused_before_resolving() -> None:
    rec = Recorder()
    resolve = resolver(["93.184.215.14"])
    async with client(rec, resolve) as c:
        with pytest.raises(Refused, match="port 22"):
            await c.post("http://merchant.example:22/", b"", {})
    assert rec.connects == [] and resolve.asked == []


async def test_a_name_that_does_not_resolve_is_refused_like_an_internal_one() -> None:
    import socket

    async def nxdomain(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def try_again(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    rec = Recorder()
    async with OutboundClient(Policy(), deadline_seconds=5, resolve=nxdomain, connect_with=rec) as c:
        with pytest.raises(Refused) as e:
            await c.post("http://nowhere.example/", b"", {})
    assert e.value.reason == "refused: nowhere.example does not resolve to a public address"
    async with OutboundClient(Policy(), deadline_seconds=5, resolve=try_again, connect_with=rec) as c:
        with pytest.raises(OutboundError) as again:
            await c.post("http://nowhere.example/", b"", {})
    assert not again.value.final and again.value.reason == "temporary DNS failure"
    assert rec.connects == []


async def test_a_large_answer_is_cut_at_the_cap() -> None:
    body = b"A" * 1_000_000
    rec = Recorder(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    async with client(rec, resolver(["93.184.215.14"])) as c:
        answer = await c.post("http://merchant.example/", b"", {})
    assert answer.truncated and len(answer.body) == MAX_ANSWER_BYTES
    assert answer.received < 16 * 1024  # taken off the connection: the cap and one small read more
