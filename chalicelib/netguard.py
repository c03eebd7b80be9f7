"""Guard outbound HTTP to URLs that tenants choose (webhook targets) against SSRF.

A webhook URL is attacker-controlled input that our Lambda fetches from inside AWS, where
169.254.169.254 hands out credentials and 10.x/172.16.x hosts may be internal services. So before
any connection we check the scheme, refuse userinfo tricks (``http://good.com@10.0.0.1/``) and, unless
the stage allows private targets (``local``), refuse every host that *is or resolves to* a
non-public address: all addresses returned by the resolver must pass, because a client may pick any.

Checking a name and then letting the HTTP library resolve it again opens a DNS-rebinding window (the
second answer can be 127.0.0.1). :func:`vet_url` therefore returns the vetted IP addresses and
:func:`pinned_connection` connects to one of them while still sending the original ``Host`` header
and, for https, the original name as SNI and for certificate verification.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.errors import FatalError, RetryableError

FORBIDDEN = "webhook_target_forbidden"

# (host, port) -> IP address strings. Injected so unit tests never touch DNS.
Resolver = Callable[[str, int], Sequence[str]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Python's ``is_private`` misses these (they are not "private" but are not the public internet either).
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 (RFC 6052 well-known and RFC 8215 local-use) embeds an IPv4 address a gateway will reach.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the OS resolver gives for ``host`` (IPv4 and IPv6), scope ids stripped.

    Raises RetryableError("dns_error") when the name does not resolve: DNS is sometimes flaky and
    a name that does not exist today may exist after the customer fixes it.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RetryableError("dns_error", f"Could not resolve {host!r}: {exc}.") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard, with the addresses it may be reached at."""

    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, without brackets
    port: int
    path: str  # path + query, never empty
    addresses: tuple[str, ...]  # vetted IP addresses, in resolver order

    @property
    def host_header(self) -> str:
        """The Host header the server expects: the name from the URL, port only when non-default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


def forbidden_reason(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (``None`` when it is).

    IPv4-mapped (``::ffff:10.0.0.1``), 6to4 and NAT64 IPv6 addresses are judged by the IPv4
    address they carry, since that is what the packets finally reach.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            return f"embeds {embedded}, which is {inner}" if inner else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared address space (CGNAT)"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def _parse_ip_literal(host: str) -> IPAddress | None:
    """The IP a host string denotes, including legacy IPv4 forms the OS accepts.

    ``inet_aton`` accepts ``127.1``, ``0x7f.0.0.1`` and ``2130706433``; ``ipaddress`` does not, so a
    check based on ``ipaddress`` alone would wave them through as "names" to a resolver that then
    answers 127.0.0.1. Normalising with inet_aton (no network) closes that gap even when the resolver
    is a test fake.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def vet_url(url: str, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """Parse ``url``, refuse what may not be fetched, resolve it, and return the vetted target.

    Raises FatalError("webhook_target_forbidden") for a bad scheme, credentials in the URL, a
    malformed host or port, or (unless ``allow_private``) a host that is or resolves to a
    non-public address. Resolution failures are RetryableError("dns_error").
    """
    if not isinstance(url, str) or not url:
        raise FatalError(FORBIDDEN, "The webhook URL must be a non-empty string.")
    # urlsplit silently drops tabs/newlines and treats backslashes differently from browsers and
    # some servers: refuse them rather than guess which host the other side would see.
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise FatalError(FORBIDDEN, "The webhook URL contains whitespace, control characters or '\\'.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FatalError(FORBIDDEN, f"Only http and https webhook URLs are allowed, not {scheme or 'none'!r}.")
    if "@" in parts.netloc:
        raise FatalError(FORBIDDEN, "Webhook URLs may not carry credentials (user@host).")
    raw_host = parts.hostname
    if not raw_host:
        raise FatalError(FORBIDDEN, "The webhook URL has no host.")
    try:
        port = parts.port if parts.port is not None else _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise FatalError(FORBIDDEN, f"The webhook URL has an invalid port: {exc}.") from exc
    if port == 0:
        raise FatalError(FORBIDDEN, "The webhook URL has an invalid port: 0.")

    ip = _parse_ip_literal(raw_host if ":" in raw_host else raw_host.rstrip("."))
    if ip is not None:
        host = str(ip)
        candidates: Sequence[str] = [str(ip)]
    else:
        try:
            host = raw_host.rstrip(".").encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise FatalError(FORBIDDEN, f"The webhook host {raw_host!r} is not a valid name.") from exc
        if not host:
            raise FatalError(FORBIDDEN, "The webhook URL has no host.")
        if not allow_private and (host == "localhost" or host.endswith(".localhost")):
            # RFC 6761: always loopback, whatever a resolver says.
            raise FatalError(FORBIDDEN, f"The webhook host {host!r} is loopback.")
        candidates = resolver(host, port)
        if not candidates:
            raise RetryableError("dns_error", f"{host!r} resolved to no address.")

    addresses: list[str] = []
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate.split("%", 1)[0])
        except ValueError as exc:
            raise FatalError(FORBIDDEN, f"{host!r} resolved to an unusable address {candidate!r}.") from exc
        if not allow_private:
            reason = forbidden_reason(address)
            if reason:
                raise FatalError(FORBIDDEN, f"The webhook host {host!r} resolves to {address}, which is {reason}.")
        # A mapped address is reached as the IPv4 address it carries.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if str(address) not in addresses:
            addresses.append(str(address))

    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=tuple(addresses))


def check_url(url: str, allow_private: bool, resolver: Resolver = system_resolver) -> None:
    """Raise FatalError("webhook_target_forbidden") if ``url`` may not be fetched (see vet_url).

    Useful for rejecting a job at the API already; the deliverer still vets again before
    connecting because DNS answers change.
    """
    vet_url(url, allow_private, resolver)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed IP with SNI and certificate checks against the URL's host name."""

    def __init__(self, address: str, port: int, server_hostname: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._server_hostname = server_hostname
        self._ssl_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self._server_hostname)
        except BaseException:
            sock.close()
            raise


def pinned_connection(
    target: Target,
    address: str,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> http.client.HTTPConnection:
    """An unopened connection to ``address`` (one of ``target.addresses``) for ``target``.

    The caller must send ``Host: target.host_header`` itself (http.client would send the IP).
    For https the certificate is verified against ``target.host``, never the IP.
    """
    if address not in target.addresses:
        raise ValueError(f"{address} is not a vetted address of {target.host}")
    if target.scheme == "https":
        context = ssl_context or ssl.create_default_context()
        return _PinnedHTTPSConnection(address, target.port, target.host, timeout, context)
    return http.client.HTTPConnection(address, target.port, timeout=timeout)
