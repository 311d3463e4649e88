"""Download a user-supplied URL safely: http(s) only, public addresses only, bounded size and time.

:func:`fetch_url` is the only way the server reaches out to the network on a user's behalf, so it refuses
anything that could turn the server into a proxy into its own network (SSRF):

* only ``http`` and ``https``; no credentials in the URL;
* the host is resolved once and EVERY address must be public (``ipaddress``: IPv4-mapped, 6to4 and
  NAT64 IPv6 forms are unwrapped first); odd numeric spellings (``2130706433``, ``0x7f.1``, ``017700000001``)
  are read the way the C library would read them, so they are checked as the address they really are;
* the socket is opened to exactly the address that was checked (no DNS-rebinding window), while the request
  still carries the original ``Host`` header and, for https, the original name for SNI and certificate checks;
* redirects are followed by hand, each target parsed and checked like the first URL;
* the body stops at ``max_bytes`` whatever ``Content-Length`` says, and an overall deadline bounds the whole
  download (a server trickling one byte per second cannot hold a request thread).

Every failure is a :class:`FetchError` with a stable ``code``, a ``message`` for people and an HTTP ``status``.
"""
from __future__ import annotations

import functools
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from backend.web.errors import ServiceError

__all__ = ["FetchError", "FetchedAudio", "normalize_url", "fetch_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH = 4096
_CHUNK = 64 * 1024
_USER_AGENT = "EssentiaServer/1.0 (+audio analysis; fetches one preview per request)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]


class FetchError(ServiceError):
    """A URL could not be fetched. ``code`` is stable; ``status`` is the HTTP status the server should answer.

    Codes: ``invalid_url`` 400, ``blocked_address`` 400, ``too_many_redirects`` 400, ``download_too_large``
    413, ``unresolvable_host`` 422 (the URL names a host that does not resolve: the client's mistake),
    ``download_failed`` 502 and ``download_timeout`` 504 (the remote server failed or was too slow).
    """

    _STATUS = {
        "invalid_url": 400,
        "blocked_address": 400,
        "too_many_redirects": 400,
        "download_too_large": 413,
        "unresolvable_host": 422,
        "download_failed": 502,
        "download_timeout": 504,
    }

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else self._STATUS.get(code, 502)

    def __repr__(self) -> str:
        return f"FetchError({self.code!r}, {self.message!r}, status={self.status})"


@dataclass(frozen=True)
class FetchedAudio:
    """The downloaded body, the URL it finally came from (after redirects) and its declared content type."""

    data: bytes
    final_url: str
    content_type: str | None


# --------------------------------------------------------------------------------------------------------------
# URL parsing and normalization
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # lowercase; IDNA-encoded; IPv6 without brackets
    port: int
    target: str  # path + query, what goes on the request line
    url: str  # the normalized URL

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _invalid(reason: str) -> FetchError:
    return FetchError("invalid_url", f"The URL is not usable: {reason}")


def _parse(url: object) -> _Target:
    """Parse and validate a URL (syntax only, no network); raise ``invalid_url`` when it is not acceptable."""
    if not isinstance(url, str) or not url.strip():
        raise _invalid("it is empty.")
    url = url.strip()
    if len(url) > _MAX_URL_LENGTH:
        raise _invalid(f"it is longer than {_MAX_URL_LENGTH} characters.")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise _invalid("it contains control characters (tabs, line breaks).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(f"{exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _invalid(f"only http and https URLs can be fetched, not {scheme or 'a URL without a scheme'}.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _invalid("URLs with a user name or password are not accepted.")
    host = _canonical_host(parts.hostname or "")
    port = port if port is not None else _DEFAULT_PORTS[scheme]
    if port == 0:
        raise _invalid("port 0 is not a port.")
    netloc = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    # Percent-encode what may not appear raw on a request line (non-ASCII), leaving existing escapes alone.
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=~")
    target = path + (f"?{query}" if query else "")
    return _Target(scheme, host, port, target, urlunsplit((scheme, netloc, path, query, "")))


def _canonical_host(host: str) -> str:
    """Lowercase, IDNA-encode and sanity-check a host name or IP literal ("name." and "name" are one host)."""
    host = host.lower()
    if host.endswith(".") and ":" not in host:
        host = host[:-1]
    if not host:
        raise _invalid("it has no host name.")
    if ":" in host or host.startswith("["):
        if "%" in host:
            raise _invalid("IPv6 zone identifiers are not accepted.")
        try:
            return str(ipaddress.IPv6Address(host.strip("[]")))
        except ValueError:
            raise _invalid(f"{host!r} is not a valid IPv6 address.") from None
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise _invalid(f"{host!r} is not a valid host name.") from None
    if not re.fullmatch(r"[a-z0-9_.-]+", host) or ".." in host or len(host) > 253:
        raise _invalid(f"{host!r} is not a valid host name.")
    if _looks_numeric(host) and _loose_ipv4(host) is None:
        raise _invalid(f"{host!r} is neither a host name nor an IP address.")
    return host


def normalize_url(url: str) -> str:
    """The cache key of a URL: lowercase scheme and host, no default port, no fragment, path and query kept
    (non-ASCII characters percent-encoded, so both spellings of a path give one key).

    Raises ``FetchError("invalid_url")`` for anything :func:`fetch_url` would refuse on syntax alone.
    """
    if isinstance(url, str) and len(url) <= _CACHED_URL_LENGTH:
        return _normalized(url)
    return _parse(url).url


# Every /analyze cache hit normalizes its URL, and clients repeat URLs. A pure function of the string, so a
# bounded LRU is exact; lru_cache does not cache exceptions, so invalid URLs raise afresh every time. Only
# ordinary-length URLs are cached, which bounds the memory at about 1024 x (1 KB + its percent-encoding).
_CACHED_URL_LENGTH = 1024


@functools.lru_cache(maxsize=1024)
def _normalized(url: str) -> str:
    return _parse(url).url


# --------------------------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------------------------

_NUMERIC_PART = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _looks_numeric(host: str) -> bool:
    """True when the last label is a number: such a host is an IPv4 address or garbage, never a DNS name."""
    last = host.rstrip(".").rsplit(".", 1)[-1]
    return bool(last) and _NUMERIC_PART.fullmatch(last) is not None


def _loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` the way inet_aton does (1-4 parts, decimal/octal/hex), e.g. ``0x7f.1`` -> 127.0.0.1."""
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if not _NUMERIC_PART.fullmatch(part):
            return None
        if part.startswith("0x"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for i, v in enumerate(head):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any.

    Teredo (2001::/32) is not unwrapped: it lies in 2001::/23, which is refused as a whole.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


# Special-purpose ranges (IANA registries) that some Python versions' is_global still calls global.
_EXTRA_BLOCKED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "240.0.0.0/4", "::/96", "100::/64", "2001::/23", "2001:db8::/32", "64:ff9b:1::/48",
    "fec0::/10",
))


def _is_public(ip: IPAddress) -> bool:
    """True for addresses on the public internet; every special-purpose range is refused.

    ``is_global`` is the main test; the explicit checks make the answer the same on every Python version
    (older ones classify multicast, 192.0.0.0/24 or IPv4-compatible ``::a.b.c.d`` loosely).
    """
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return _is_public(inner)
    if any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                                 or ip.is_private or ip.is_unspecified)


def _is_loopback(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback  # 127.0.0.0/8 or ::1


def _check_address(ip: IPAddress, host: str, allow_loopback: bool) -> None:
    if _is_public(ip) or (allow_loopback and _is_loopback(ip)):
        return
    inner = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    shown = f"{ip} ({inner})" if inner is not None else str(ip)
    raise FetchError(
        "blocked_address",
        f"The URL's host {host!r} points to {shown}, a private, local or reserved address; "
        "only public internet addresses can be fetched.",
    )


def _resolve(target: _Target, resolver: Resolver, allow_loopback: bool) -> list[IPAddress]:
    """Every address of the target's host, each checked; refuse if ANY is not allowed."""
    literal = _literal_ip(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = resolver(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):
            raise FetchError("unresolvable_host", f"The host {target.host!r} could not be resolved: no such "
                                                  "host, or DNS did not answer. Check the URL.") from None
        addresses = []
        for info in infos:
            try:
                addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            except (ValueError, IndexError, TypeError):
                raise FetchError("unresolvable_host", f"The host {target.host!r} resolved to a bad address.") \
                    from None
        if not addresses:
            raise FetchError("unresolvable_host", f"The host {target.host!r} has no address.")
    for ip in addresses:
        _check_address(ip, target.host, allow_loopback)
    return list(dict.fromkeys(addresses))  # dedupe, keep resolver order


def _literal_ip(host: str) -> IPAddress | None:
    if ":" in host:
        return ipaddress.IPv6Address(host)
    return _loose_ipv4(host) if _looks_numeric(host) else None


# --------------------------------------------------------------------------------------------------------------
# The overall time limit
# --------------------------------------------------------------------------------------------------------------

class _Deadline:
    """An overall time budget; also closes the live socket when it runs out, so no blocked read outlives it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise _timeout(self.seconds)
        return left

    def guard(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the time is up (replacing any earlier guard)."""
        self.cancel()
        self._timer = threading.Timer(max(0.0, self.end - time.monotonic()), _abort, args=(sock,))
        self._timer.daemon = True
        self._timer.start()

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _abort(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in another thread
    except OSError:
        pass  # not connected yet (connect has its own timeout) or already closed


# --------------------------------------------------------------------------------------------------------------
# Connections pinned to a checked address
# --------------------------------------------------------------------------------------------------------------

class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection that talks to ``host`` (Host header) but opens its socket to ``address`` only.

    The socket is handed to ``deadline`` as soon as it exists, so the overall time limit covers connecting,
    the TLS handshake, the headers and the body alike.
    """

    def __init__(self, host: str, port: int, *, address: IPAddress, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        family = socket.AF_INET6 if self._address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self._deadline.guard(sock)
        try:
            sock.settimeout(self._deadline.remaining())
            sock.connect((str(self._address), self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """As above, then TLS with the system trust store and the original host name for SNI and verification."""

    def connect(self) -> None:
        super().connect()
        # wrap_socket takes the file descriptor over: guard the TLS socket before the handshake starts.
        self.sock = _tls_context().wrap_socket(self.sock, server_hostname=self.host, do_handshake_on_connect=False)
        self._deadline.guard(self.sock)
        self.sock.do_handshake()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built on first use, not at import: loading the trust store costs a few milliseconds."""
    return ssl.create_default_context()


# --------------------------------------------------------------------------------------------------------------
# fetch_url
# --------------------------------------------------------------------------------------------------------------

def _timeout(seconds: float) -> FetchError:
    return FetchError("download_timeout", f"The download did not finish within {seconds:g} seconds.")


def _too_large(max_bytes: int) -> FetchError:
    return FetchError("download_too_large",
                      f"The file at the URL is larger than the {max_bytes}-byte limit.")


def fetch_url(url: str, *, max_bytes: int, timeout: float = 15.0, max_redirects: int = 5,
              allow_loopback: bool = False, resolver: Resolver = socket.getaddrinfo) -> FetchedAudio:
    """Download ``url`` and return its body, refusing anything unsafe (see the module docstring).

    The whole call, redirects included, takes at most about ``timeout`` seconds, reads at most ``max_bytes``
    bytes of body and never connects to an address that is not public (loopback too when
    ``allow_loopback``). Raises :class:`FetchError` and nothing else for any problem with the URL or the
    download.
    """
    if max_bytes < 0 or timeout <= 0 or max_redirects < 0:
        raise ValueError("max_bytes, timeout and max_redirects must be non-negative (timeout positive)")
    deadline = _Deadline(timeout)
    target = _parse(url)
    for _ in range(max_redirects + 1):
        addresses = _resolve(target, resolver, allow_loopback)
        status, location, result = _request(target, addresses, max_bytes, deadline)
        if result is not None:
            return result
        if not location:
            raise FetchError("download_failed", f"The server answered HTTP {status} without a Location.")
        try:
            target = _parse(urljoin(target.url, location))
        except FetchError as exc:
            raise FetchError(exc.code, f"The URL redirects to an unusable location: {exc.message}") from None
    raise FetchError("too_many_redirects", f"The URL redirects more than {max_redirects} times.")


def _request(target: _Target, addresses: list[IPAddress], max_bytes: int,
             deadline: _Deadline) -> tuple[int, str | None, FetchedAudio | None]:
    """One GET. Returns (status, Location, None) for a redirect, (status, None, result) on success."""
    last_error: Exception | None = None
    for address in addresses:  # like a browser: the next address if one refuses the connection
        conn = _connection(target, address, deadline)
        try:
            try:
                conn.connect()
            except OSError as exc:
                last_error = exc
                if deadline.expired() or isinstance(exc, (socket.timeout, TimeoutError)):
                    raise _timeout(deadline.seconds) from None
                continue
            return _exchange(conn, target, max_bytes, deadline)
        except FetchError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.expired() or isinstance(exc, (socket.timeout, TimeoutError)):
                raise _timeout(deadline.seconds) from None
            raise FetchError("download_failed", f"The download from {target.host} failed: {_describe(exc)}.") \
                from None
        finally:
            deadline.cancel()
            conn.close()
    raise FetchError("download_failed", f"Could not connect to {target.host}: {_describe(last_error)}.")


def _connection(target: _Target, address: IPAddress, deadline: _Deadline) -> _PinnedHTTPConnection:
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    return cls(target.host, target.port, address=address, deadline=deadline)


def _exchange(conn: _PinnedHTTPConnection, target: _Target, max_bytes: int,
              deadline: _Deadline) -> tuple[int, str | None, FetchedAudio | None]:
    conn.putrequest("GET", target.target, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", target.host_header)
    conn.putheader("User-Agent", _USER_AGENT)
    conn.putheader("Accept", "audio/*, video/mp4, application/octet-stream;q=0.9, */*;q=0.5")
    conn.putheader("Accept-Encoding", "identity")  # a compressed body would dodge the size cap
    conn.putheader("Connection", "close")
    conn.endheaders()
    sock = conn.sock  # kept: http.client hands the socket to the response and forgets it on "close"
    sock.settimeout(deadline.remaining())
    response = conn.getresponse()
    if response.status in _REDIRECTS:
        return response.status, response.getheader("Location"), None
    if not 200 <= response.status < 300:
        raise FetchError("download_failed",
                         f"The server answered HTTP {response.status} {response.reason} for the URL.".strip())
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)  # refuse early, before reading a byte of the body
    data = _read_body(sock, response, max_bytes, deadline)
    return response.status, None, FetchedAudio(data, target.url, response.getheader("Content-Type"))


def _read_body(sock: socket.socket, response: http.client.HTTPResponse, max_bytes: int,
               deadline: _Deadline) -> bytes:
    """Read the body, counting bytes ourselves (Content-Length may lie) and watching the deadline."""
    chunks: list[bytes] = []
    total = 0
    while True:
        sock.settimeout(deadline.remaining())  # raises download_timeout once the time is up
        chunk = response.read1(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            if deadline.expired():
                raise _timeout(deadline.seconds)  # our watchdog cut the connection
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
    if response.length:  # read1 reports a body shorter than its Content-Length as a quiet end
        raise FetchError("download_failed",
                         f"The server closed the connection {response.length} bytes before the end of the file.")
    return b"".join(chunks)


def _describe(exc: BaseException | None) -> str:
    """A short, safe description of a network failure (no library internals, file names or errno noise)."""
    if exc is None:
        return "it has no usable address"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "its TLS certificate could not be verified"
    if isinstance(exc, ssl.SSLError):
        return "the TLS handshake failed"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, http.client.HTTPException):
        return "the server's response was not valid HTTP"
    if isinstance(exc, UnicodeError):
        return "the request could not be encoded"
    return "a network error"
