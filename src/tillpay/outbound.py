"""Calls from Tillpay to addresses that merchants choose (notifications), made so that they cannot be aimed
inward, held open, or used to read what answers there.

Every connection resolves the host, checks each address it resolved to, and connects to the checked
address itself (TLS still verifies and sends the host name), so a DNS answer that changes between the
check and the connection cannot slip an internal address in. Loopback, private, link-local (the cloud
metadata address 169.254.169.254 too), shared (CGNAT), multicast, reserved and unspecified addresses
are refused unless an operator allows their network (``TILLPAY_NOTIFY_ALLOW_NETWORKS``); only the ports in
``TILLPAY_NOTIFY_ALLOW_PORTS`` are used. Redirects are never followed. One attempt has one deadline for
resolving, connecting, sending and reading; at most ``MAX_ANSWER_BYTES`` of the answer are read. What a
merchant may see of an answer is its status and ``excerpt`` of its body.

See docs/security.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpcore
import httpx

from tillpay.config import Settings, parse_networks, parse_ports

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Bytes of an answer's body that are read; the rest is never taken off the connection.
MAX_ANSWER_BYTES = 4096
#: Characters of an answer that the merchant sees (printable only).
EXCERPT_CHARS = 200
#: The longest URL a notification may go to (the width of the ``notify_url`` columns).
MAX_URL_LENGTH = 256
#: Bytes asked of the socket per read: small, so a capped read takes little more than the cap.
_READ_CHUNK = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "Tillpay-Notify/1"


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


#: Address ranges a notification never goes to unless allowed, with the name the refusal gives them
#: (IANA's IPv4 and IPv6 special-purpose address registries; the first match names the address).
FORBIDDEN: tuple[tuple[IPNetwork, str], ...] = (
    *((n, "unspecified") for n in _nets("0.0.0.0/8", "::/128")),
    *((n, "loopback") for n in _nets("127.0.0.0/8", "::1/128")),
    *((n, "private") for n in _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    *((n, "unique-local") for n in _nets("fc00::/7")),
    *((n, "link-local") for n in _nets("169.254.0.0/16", "fe80::/10", "fec0::/10")),
    *((n, "shared (CGNAT)") for n in _nets("100.64.0.0/10")),
    *((n, "multicast") for n in _nets("224.0.0.0/4", "ff00::/8")),
    *(
        (n, "reserved")
        for n in _nets(
            "192.0.0.0/24",  # IETF protocol assignments (192.0.0.192: some clouds' metadata)
            "192.0.2.0/24",  # documentation
            "192.88.99.0/24",  # 6to4 relay anycast
            "198.18.0.0/15",  # benchmarking
            "198.51.100.0/24",  # documentation
            "203.0.113.0/24",  # documentation
            "240.0.0.0/4",  # reserved, and the broadcast address
            "::/96",  # IPv4-compatible (deprecated)
            "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
            "100::/64",  # discard-only
            "2001::/23",  # IETF protocol assignments, Teredo among them
            "2001:db8::/32",  # documentation
            "2002::/16",  # 6to4: would reach any IPv4 address, private ones too
            "3fff::/20",  # documentation
            "5f00::/16",  # segment routing
        )
    ),
)
#: The NAT64 well-known prefix: the address is the IPv4 address in its last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class OutboundError(Exception):
    """An attempt that got no answer; ``reason`` is short and safe to show to the merchant."""

    #: Whether trying the same URL again later cannot help.
    final = False

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        #: For the operator's log only (may name resolved internal addresses).
        self.detail = detail or reason


class Refused(OutboundError):
    """The URL or the address it resolves to is not allowed; nothing was sent."""

    final = True


def _port_list(ports: frozenset[int]) -> str:
    """``80, 443, 1024-65535``: the ports as the refusal names them."""
    runs: list[list[int]] = []
    for port in sorted(ports):
        if runs and runs[-1][1] == port - 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass(frozen=True, slots=True)
class Policy:
    """Which addresses and ports outbound calls may reach."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_ports: frozenset[int] = frozenset({80, 443, 8080, 8443})

    @staticmethod
    def of(settings: Settings) -> Policy:
        """The policy the settings describe (parsed once per distinct pair of settings)."""
        return _policy(settings.notify_allow_networks, settings.notify_allow_ports)

    def address_problem(self, ip: IPAddress) -> str | None:
        """Why ``ip`` may not be called (``"loopback"``, ``"private"``...), or None if it may."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in n for n in self.allow_networks if n.version == ip.version):
            return None
        for network, name in FORBIDDEN:
            if network.version == ip.version and ip in network:
                return name
        if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
            return self.address_problem(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return None

    def url_problem(self, url: str) -> str | None:
        """What is wrong with ``url`` as a notification address, without resolving it; None if nothing.

        Completes ``"notify_url ..."``: e.g. ``"must be an http:// or https:// URL"``.
        """
        if len(url) > MAX_URL_LENGTH:
            return f"is longer than {MAX_URL_LENGTH} characters"
        if any(c.isspace() or not c.isprintable() for c in url):
            return "must not contain spaces or control characters"
        try:
            u = httpx.URL(url)
        except httpx.InvalidURL:
            return "is not a valid URL"
        if u.scheme not in _DEFAULT_PORTS:
            return "must be an http:// or https:// URL"
        if not u.host:
            return "has no host"
        if u.userinfo:
            return "must not contain a user name or password"
        port = u.port or _DEFAULT_PORTS[u.scheme]
        if port not in self.allow_ports:
            return f"uses port {port}; notifications go to ports {_port_list(self.allow_ports)} only"
        try:
            ip = ipaddress.ip_address(u.host)
        except ValueError:
            return None  # a host name: its addresses are checked on each connection
        problem = self.address_problem(ip)
        return f"names a {problem} address, which notifications may not go to" if problem else None


@lru_cache(maxsize=8)
def _policy(networks: str, ports: str) -> Policy:
    return Policy(parse_networks(networks), parse_ports(ports))


def notify_url_problem(settings: Settings, url: str) -> str | None:
    """The edge check of a notify URL (scheme, user info, port, a literal address): what is wrong, or
    None. Cheap and without DNS; the check at each connection is the one that guards."""
    return Policy.of(settings).url_problem(url)


def excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """What a merchant may see of an answer: printable characters only, whitespace runs as one space,
    at most ``limit`` characters."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------ the client

#: (host, port) → the addresses the host resolves to, as text; tests stub it.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (``getaddrinfo``), in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _CountingStream(httpcore.AsyncNetworkStream):
    """A connection that reads in small pieces and counts the bytes it took off the socket."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, received: int = 0) -> None:
        self._inner = inner
        self.received = received

    # httpcore's interface names the parameter ``timeout`` (ASYNC109); a float of seconds, not money.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        data = await self._inner.read(min(max_bytes, _READ_CHUNK), timeout)
        self.received += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _CountingStream(inner, self.received)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to checked addresses: the host is resolved here and the connection goes
    to the very address that passed the check."""

    def __init__(self, policy: Policy, resolve: Resolver, inner: httpcore.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = inner

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        host = host.strip("[]")
        if port not in self._policy.allow_ports:
            raise Refused(f"refused: port {port} is not allowed for notifications")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if problem := self._policy.address_problem(literal):
                raise Refused(f"refused: {host} is a {problem} address")
            return [literal]
        try:
            found = [ipaddress.ip_address(a) for a in await self._resolve(host, port)]
        except socket.gaierror as e:
            if e.errno == socket.EAI_AGAIN:
                raise OutboundError("temporary DNS failure", f"{host}: {e}") from None
            # Said the same way as an internal address, so that the answers do not tell which internal
            # names exist.
            raise Refused(f"refused: {host} does not resolve to a public address", f"{host}: {e}") from None
        if not found:
            raise Refused(f"refused: {host} does not resolve to a public address", f"{host}: no address")
        bad = [(ip, problem) for ip in found if (problem := self._policy.address_problem(ip))]
        if bad:
            # All or nothing: a name that also resolves inward is not used at all.
            raise Refused(
                f"refused: {host} does not resolve to a public address",
                f"{host} resolves to " + ", ".join(f"{ip} ({problem})" for ip, problem in bad),
            )
        return found

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for ip in await self._addresses(host, port):
            try:
                stream = await self._inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
                continue
            return _CountingStream(stream)
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("refused: not a network address")

    async def sleep(self, seconds: float) -> None:  # float-ok: seconds
        await self._inner.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the other side answered, as far as it was read."""

    status: int
    #: At most ``MAX_ANSWER_BYTES`` of the body.
    body: bytes
    #: Whether the body went on beyond what was read.
    truncated: bool
    #: Bytes taken off the connection for this answer (status line, headers and body as read).
    received: int


class OutboundClient:
    """POSTs to addresses merchants chose, under ``Policy``, one deadline per call, the answer capped.

    A connection is opened for each call (and so each call resolves and checks the host again); nothing
    is read from the environment (no proxies), redirects are answers like any other.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        deadline_seconds: float,  # float-ok: seconds
        resolve: Resolver = system_resolve,
        ssl_context: ssl.SSLContext | None = None,
        connect_with: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        """``resolve`` and ``connect_with`` (what opens the checked connections) are for tests to stub."""
        self.policy = policy
        self.deadline_seconds = deadline_seconds
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            network_backend=_GuardedBackend(policy, resolve, connect_with or httpcore.AnyIOBackend()),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> OutboundClient:
        """The notification client the settings describe."""
        return cls(Policy.of(settings), deadline_seconds=settings.notify_timeout_seconds, **kw)

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection still open."""
        await self._pool.aclose()

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> Answer:
        """POST ``content`` to ``url``; the answer, or OutboundError (Refused if nothing may be sent)."""
        if problem := self.policy.url_problem(url):
            raise Refused(f"refused: the URL {problem}")
        u = httpx.URL(url)
        request_headers = [
            (b"Host", u.netloc),
            (b"User-Agent", USER_AGENT.encode()),
            (b"Accept-Encoding", b"identity"),  # nothing to decompress, so nothing can expand
            (b"Content-Length", str(len(content)).encode()),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        target = httpcore.URL(scheme=u.raw_scheme, host=u.raw_host, port=u.port, target=u.raw_path)
        limit = self.deadline_seconds
        try:
            async with asyncio.timeout(limit):
                async with self._pool.stream(
                    b"POST",
                    target,
                    headers=request_headers,
                    content=content,
                    # Per step as well, though the overall deadline above is what bounds the call.
                    extensions={"timeout": {"connect": limit, "read": limit, "write": limit, "pool": limit}},
                ) as response:
                    body = bytearray()
                    truncated = False
                    async for chunk in response.aiter_stream():
                        body += chunk
                        if len(body) > MAX_ANSWER_BYTES:
                            truncated = True
                            break
                    stream = response.extensions.get("network_stream")
                    received = stream.received if isinstance(stream, _CountingStream) else len(body)
                    return Answer(response.status, bytes(body[:MAX_ANSWER_BYTES]), truncated, received)
        except TimeoutError:
            raise OutboundError(f"no complete answer within {limit:g} s") from None
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
            if isinstance(e.__cause__, ssl.SSLError):
                why = getattr(e.__cause__, "reason", None) or "handshake failed"
                raise OutboundError(f"TLS: {why}", f"{u.host}: {e}") from None
            raise OutboundError("could not connect", f"{u.host}:{u.port}: {e}") from None
        except httpcore.TimeoutException:
            raise OutboundError(f"no complete answer within {limit:g} s") from None
        except httpcore.ProtocolError as e:
            raise OutboundError("not a valid HTTP answer", str(e)) from None
        except httpcore.NetworkError as e:
            raise OutboundError("the connection broke before a complete answer", str(e)) from None
