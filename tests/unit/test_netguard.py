"""The SSRF guard for webhook targets. A fake resolver stands in for DNS: no network here."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Sequence

import pytest

from chalicelib import netguard
from chalicelib.errors import FatalError, RetryableError
from chalicelib.netguard import Target, check_url, forbidden_reason, pinned_connection, vet_url


class FakeResolver:
    """Answers from a table and remembers what it was asked."""

    def __init__(self, table: dict[str, Sequence[str]] | None = None) -> None:
        self.table = table or {}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise RetryableError("dns_error", f"no such host {host}")
        return self.table[host]


PUBLIC = FakeResolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})


def _forbidden(url: str, resolver: FakeResolver | None = None, allow_private: bool = False) -> str:
    with pytest.raises(FatalError) as caught:
        check_url(url, allow_private, resolver or FakeResolver())
    assert caught.value.code == "webhook_target_forbidden"
    return caught.value.message


# --- schemes, userinfo and malformed URLs (refused even when private targets are allowed) ----------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "javascript:alert(1)",
        "hooks.example.com/path",
        "//hooks.example.com/path",
        "",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_non_http_schemes_are_refused(url: str, allow_private: bool) -> None:
    _forbidden(url, PUBLIC, allow_private)


@pytest.mark.parametrize(
    "url",
    [
        "http://user@hooks.example.com/",
        "http://user:pass@hooks.example.com/",
        "http://hooks.example.com@10.0.0.1/",
        "http://hooks.example.com:443@127.0.0.1/",
        "https://@hooks.example.com/",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_userinfo_is_refused(url: str, allow_private: bool) -> None:
    assert "credentials" in _forbidden(url, PUBLIC, allow_private)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com\\@127.0.0.1/",
        "http://hooks.example.com/a b",
        "http://hooks.exa\tmple.com/",
        "http://hooks.example.com/\r\nX-Injected: 1",
        "http:///path-only",
        "http://hooks.example.com:99999/",
        "http://hooks.example.com:0/",
        "http://hooks.example.com:abc/",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    _forbidden(url, PUBLIC)


# --- addresses ---------------------------------------------------------------------------------

FORBIDDEN_LITERALS = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.255", "CGNAT"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", ""),
    ("255.255.255.255", ""),
    ("198.18.0.1", ""),
    ("192.0.2.10", ""),
    ("[::1]", "loopback"),
    ("[::]", "unspecified"),
    ("[fc00::1]", "private"),
    ("[fd12:3456::1]", "private"),
    ("[fe80::1]", "link-local"),
    ("[ff02::1]", "multicast"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[::ffff:169.254.169.254]", "link-local"),
    ("[::ffff:10.1.2.3]", "private"),
    ("[::ffff:7f00:1]", "loopback"),
    ("[64:ff9b::a00:1]", "private"),  # NAT64 of 10.0.0.1
    ("[2002:7f00:1::]", "loopback"),  # 6to4 of 127.0.0.1
    ("[2001:db8::1]", ""),  # documentation
    # Legacy IPv4 spellings the OS resolver accepts:
    ("127.1", "loopback"),
    ("2130706433", "loopback"),
    ("0x7f000001", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("017700000001", "loopback"),
    ("127.0.0.1.", "loopback"),
    ("169.254.169.254.", "link-local"),
]


@pytest.mark.parametrize(("host", "reason"), FORBIDDEN_LITERALS)
def test_non_public_ip_literals_are_refused_without_resolving(host: str, reason: str) -> None:
    resolver = FakeResolver()
    message = _forbidden(f"http://{host}:8080/hook", resolver)
    assert reason in message
    assert resolver.calls == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.20.1.1",
        "192.168.0.10",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "::1",
        "::",
        "fc00::1",
        "fe80::1",
        "ff02::fb",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
    ],
)
def test_a_name_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    _forbidden("https://hooks.example.com/", FakeResolver({"hooks.example.com": [address]}))


@pytest.mark.parametrize(
    "host",
    [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "172.15.255.255",
        "100.128.0.1",
        "100.63.255.255",
        "[2606:4700:4700::1111]",
        "[::ffff:8.8.8.8]",
        "[64:ff9b::808:808]",
    ],
)
def test_public_ip_literals_are_allowed(host: str) -> None:
    target = vet_url(f"https://{host}/hook", False, FakeResolver())
    assert len(target.addresses) == 1


def test_every_resolved_address_must_be_public() -> None:
    # GIVEN a name with one public and one private address (a client may pick either)
    resolver = FakeResolver({"mixed.example.com": ["93.184.216.34", "10.0.0.5"]})
    # THEN it is refused
    assert "10.0.0.5" in _forbidden("https://mixed.example.com/", resolver)


def test_localhost_names_are_refused_without_asking_the_resolver() -> None:
    resolver = FakeResolver({"localhost": ["93.184.216.34"], "app.localhost": ["93.184.216.34"]})
    _forbidden("http://localhost:8000/hook", resolver)
    _forbidden("http://LOCALHOST./hook", resolver)
    _forbidden("http://app.localhost/hook", resolver)
    assert resolver.calls == []


def test_a_name_resolving_to_a_mapped_private_address_is_refused() -> None:
    _forbidden("http://sneaky.example.com/", FakeResolver({"sneaky.example.com": ["::ffff:192.168.0.1"]}))


def test_resolution_failures_are_retryable_not_fatal() -> None:
    with pytest.raises(RetryableError) as caught:
        check_url("https://nowhere.example.com/", False, FakeResolver())
    assert caught.value.code == "dns_error"
    with pytest.raises(RetryableError):
        check_url("https://empty.example.com/", False, FakeResolver({"empty.example.com": []}))


def test_garbage_from_the_resolver_is_refused() -> None:
    _forbidden("https://odd.example.com/", FakeResolver({"odd.example.com": ["not-an-ip"]}))


# --- a vetted target ---------------------------------------------------------------------------


def test_vet_url_returns_the_vetted_addresses_and_what_to_send() -> None:
    # GIVEN a public name
    resolver = FakeResolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    # WHEN it is vetted
    target = vet_url("https://Hooks.Example.com:8443/in/hook?token=abc", False, resolver)
    # THEN the resolver was asked once, with the port, and the target pins its answers
    assert resolver.calls == [("hooks.example.com", 8443)]
    assert target == Target(
        scheme="https",
        host="hooks.example.com",
        port=8443,
        path="/in/hook?token=abc",
        addresses=("93.184.216.34", "2606:2800:220:1::1"),
    )
    assert target.host_header == "hooks.example.com:8443"


@pytest.mark.parametrize(
    ("url", "host_header", "path"),
    [
        ("http://hooks.example.com", "hooks.example.com", "/"),
        ("http://hooks.example.com:80/a", "hooks.example.com", "/a"),
        ("https://hooks.example.com:443?x=1", "hooks.example.com", "/?x=1"),
        ("https://hooks.example.com/a#frag", "hooks.example.com", "/a"),
        ("http://[2606:4700:4700::1111]:8080/a", "[2606:4700:4700::1111]:8080", "/a"),
    ],
)
def test_host_header_and_path(url: str, host_header: str, path: str) -> None:
    target = vet_url(url, False, PUBLIC)
    assert target.host_header == host_header
    assert target.path == path


def test_internationalised_names_are_resolved_in_idna_form() -> None:
    resolver = FakeResolver({"xn--bcher-kva.example": ["93.184.216.34"]})
    target = vet_url("https://bücher.example/hook", False, resolver)
    assert target.host == "xn--bcher-kva.example"
    assert resolver.calls == [("xn--bcher-kva.example", 443)]


def test_allow_private_lets_loopback_and_private_through() -> None:
    resolver = FakeResolver({"localhost": ["::1", "127.0.0.1"], "db.internal": ["10.0.0.7"]})
    assert vet_url("http://127.0.0.1:9000/x", True, resolver).addresses == ("127.0.0.1",)
    assert vet_url("http://localhost:9000/x", True, resolver).addresses == ("::1", "127.0.0.1")
    assert vet_url("http://db.internal/x", True, resolver).addresses == ("10.0.0.7",)


def test_mapped_addresses_are_pinned_as_ipv4() -> None:
    target = vet_url("http://a.example.com/", True, FakeResolver({"a.example.com": ["::ffff:10.0.0.1"]}))
    assert target.addresses == ("10.0.0.1",)


@pytest.mark.parametrize(
    ("address", "reason"),
    [("8.8.8.8", None), ("10.0.0.1", "private"), ("::ffff:8.8.8.8", None), ("::1", "loopback")],
)
def test_forbidden_reason(address: str, reason: str | None) -> None:
    assert forbidden_reason(address) == reason


# --- the system resolver and pinned connections (socket functions faked, nothing opened) --------


def test_system_resolver_returns_every_address_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        assert (host, port) == ("hooks.example.com", 443)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", 443, 0, 2)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert netguard.system_resolver("hooks.example.com", 443) == ["93.184.216.34", "fe80::1"]


def test_system_resolver_failure_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(RetryableError) as caught:
        netguard.system_resolver("nowhere.example.com", 443)
    assert caught.value.code == "dns_error"


def test_pinned_connection_targets_the_vetted_ip_not_the_name() -> None:
    target = vet_url("https://hooks.example.com/x", False, PUBLIC)
    conn = pinned_connection(target, "93.184.216.34", timeout=1.0)
    assert isinstance(conn, http.client.HTTPSConnection)
    assert (conn.host, conn.port) == ("93.184.216.34", 443)
    assert conn._server_hostname == "hooks.example.com"  # type: ignore[attr-defined]
    assert conn.sock is None  # nothing opened

    plain = pinned_connection(vet_url("http://hooks.example.com:8080/", False, PUBLIC), "93.184.216.34", timeout=1)
    assert type(plain) is http.client.HTTPConnection
    assert (plain.host, plain.port) == ("93.184.216.34", 8080)


def test_pinned_connection_refuses_an_address_that_was_not_vetted() -> None:
    target = vet_url("https://hooks.example.com/x", False, PUBLIC)
    with pytest.raises(ValueError):
        pinned_connection(target, "10.0.0.1", timeout=1.0)
