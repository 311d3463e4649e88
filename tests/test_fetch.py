"""backend.audio.fetch: downloads from a real local HTTP server, and the SSRF battery with a stub resolver.

No traffic leaves 127.0.0.1: every name is resolved by a stub, and every test that would connect elsewhere
asserts that no connection is attempted at all.
"""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.audio import fetch as fetch_module
from backend.audio.fetch import FetchedAudio, FetchError, fetch_url, normalize_url
from tests.synth import sine, wav_bytes

AUDIO = wav_bytes(sine(440.0, 1.0, 8000), 8000)
MAX = 1_000_000


# ---------------------------------------------------------------------------------------------------------------
# a real local server
# ---------------------------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen_hosts: list[str] = []
    seen_paths: list[str] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client hung up: expected for refused downloads

    def _redirect(self, location: str, status: int = 302) -> None:
        self._send(status, headers={"Location": location}, length=0)

    def _trickle(self, count: int, pause: float) -> None:
        try:
            for _ in range(count):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802 - the name http.server wants
        Handler.seen_hosts.append(self.headers.get("Host", ""))
        Handler.seen_paths.append(self.path)
        path = self.path
        if path == "/audio.wav":
            self._send(200, AUDIO, {"Content-Type": "audio/wav"}, len(AUDIO))
        elif path.startswith("/hop/"):  # /hop/3 -> /hop/2 -> ... -> /audio.wav
            n = int(path.rsplit("/", 1)[1])
            self._redirect("/audio.wav" if n <= 0 else f"/hop/{n - 1}", status=(301, 302, 303, 307, 308)[n % 5])
        elif path == "/loop":
            self._redirect("/loop")
        elif path == "/to-private":
            self._redirect("http://10.0.0.5/secret")
        elif path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-internal-name":
            self._redirect("http://internal.test/admin")
        elif path == "/to-file":
            self._redirect("file:///etc/passwd")
        elif path == "/no-location":
            self._send(302, length=0)
        elif path == "/missing":
            self._send(404, b"not here", length=8)
        elif path == "/error":
            self._send(500, b"boom", length=4)
        elif path == "/declared-huge":  # refused from the header alone
            self._send(200, b"", length=50 * MAX)
        elif path == "/no-length-huge":  # close-delimited, no Content-Length: must be counted
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif path == "/chunked-huge":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"10000\r\n" + b"\0" * 65536 + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif path == "/short-length":  # claims 100 bytes, sends 2 MB: we must read only what was declared
            self._send(200, b"\1" * 2 * MAX, length=100)
        elif path == "/long-length":  # claims more than it sends, then hangs up
            self._send(200, AUDIO[:1000], length=len(AUDIO))
        elif path == "/slow-body":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self._trickle(1000, 0.1)
        elif path == "/slow-close-delimited":  # no length, "Connection: close": the response owns the socket
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self._trickle(1000, 0.1)
        elif path == "/slow-headers":
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(100):
                    self.wfile.write(b"X-Slow: y\r\n")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            self._send(404, length=0)


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def local(url: str, **kwargs) -> FetchedAudio:
    kwargs.setdefault("max_bytes", MAX)
    kwargs.setdefault("timeout", 3.0)
    return fetch_url(url, allow_loopback=True, **kwargs)


def fails(code: str, url: str, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as info:
        local(url, **kwargs)
    assert info.value.code == code, info.value
    assert info.value.status == FetchError._STATUS[code]
    assert len(info.value.message) > 15
    assert "Errno" not in info.value.message and ".c:" not in info.value.message  # no library internals
    return info.value


# ---------------------------------------------------------------------------------------------------------------
# downloads that work
# ---------------------------------------------------------------------------------------------------------------

def test_downloads_audio(server):
    got = local(f"{server}/audio.wav")
    assert got.data == AUDIO
    assert got.content_type == "audio/wav"
    assert got.final_url == f"{server}/audio.wav"


def test_non_ascii_path_is_sent_percent_encoded(server):
    Handler.seen_paths.clear()
    fails("download_failed", f"{server}/caf\u00e9 1.wav")  # an unknown path: 404
    assert Handler.seen_paths == ["/caf%C3%A9%201.wav"]


def test_follows_every_kind_of_redirect(server):
    got = local(f"{server}/hop/4")  # 308, 307, 303, 302, 301 on the way
    assert got.data == AUDIO
    assert got.final_url == f"{server}/audio.wav"


def test_connects_to_the_checked_address_and_sends_the_original_host(server):
    port = int(server.rsplit(":", 1)[1])
    calls = []

    def rebinding(host, port_, *args, **kwargs):
        # A rebinding attacker answers a safe address first, a private one afterwards.
        calls.append(host)
        address = "127.0.0.1" if len(calls) == 1 else "10.0.0.5"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port_))]

    Handler.seen_hosts.clear()
    got = local(f"http://Audio.Test:{port}/audio.wav", resolver=rebinding)
    assert got.data == AUDIO
    assert calls == ["audio.test"]  # resolved once; the socket went to that very answer
    assert Handler.seen_hosts == [f"audio.test:{port}"]


def test_loopback_is_refused_without_the_test_setting(server):
    for path in ("/audio.wav", "/hop/2"):
        with pytest.raises(FetchError) as info:
            fetch_url(f"{server}{path}", max_bytes=MAX, timeout=2.0)
        assert info.value.code == "blocked_address" and info.value.status == 400


# ---------------------------------------------------------------------------------------------------------------
# redirects
# ---------------------------------------------------------------------------------------------------------------

def test_too_many_redirects(server):
    fails("too_many_redirects", f"{server}/loop")
    fails("too_many_redirects", f"{server}/hop/3", max_redirects=2)
    assert local(f"{server}/hop/3", max_redirects=4).data == AUDIO


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata"])
def test_redirect_to_a_blocked_address(server, path):
    err = fails("blocked_address", f"{server}{path}")
    assert "10.0.0.5" in err.message or "169.254.169.254" in err.message


def test_redirect_to_a_name_that_resolves_privately(server, monkeypatch):
    connects = []
    real_connect = fetch_module._PinnedHTTPConnection.connect

    def recording_connect(self):
        connects.append(str(self._address))
        real_connect(self)

    def resolver(host, port, *args, **kwargs):
        assert host == "internal.test"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]

    monkeypatch.setattr(fetch_module._PinnedHTTPConnection, "connect", recording_connect)
    fails("blocked_address", f"{server}/to-internal-name", resolver=resolver)
    assert connects == ["127.0.0.1"]  # only the first hop ever connected


def test_redirect_to_another_scheme(server):
    fails("invalid_url", f"{server}/to-file")


def test_redirect_without_location(server):
    fails("download_failed", f"{server}/no-location")


# ---------------------------------------------------------------------------------------------------------------
# sizes, statuses, time
# ---------------------------------------------------------------------------------------------------------------

def test_declared_size_over_the_cap_is_refused_early(server):
    t0 = time.monotonic()
    fails("download_too_large", f"{server}/declared-huge")
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("path", ["/no-length-huge", "/chunked-huge"])
def test_undeclared_size_is_counted(server, path):
    fails("download_too_large", f"{server}{path}", max_bytes=100_000)


def test_cap_is_exact(server):
    assert local(f"{server}/audio.wav", max_bytes=len(AUDIO)).data == AUDIO
    fails("download_too_large", f"{server}/audio.wav", max_bytes=len(AUDIO) - 1)


def test_lying_content_length(server):
    # Too small a claim: we read what was declared and not a byte more.
    assert local(f"{server}/short-length").data == b"\1" * 100
    # Too large a claim: the body ends early, which is a failed download, not a short file.
    fails("download_failed", f"{server}/long-length")


@pytest.mark.parametrize("path,status", [("/missing", "404"), ("/error", "500")])
def test_error_status(server, path, status):
    err = fails("download_failed", f"{server}{path}")
    assert status in err.message and err.status == 502


@pytest.mark.parametrize("path", ["/slow-body", "/slow-close-delimited", "/slow-headers"])
def test_overall_deadline_holds_against_trickling(server, path):
    t0 = time.monotonic()
    fails("download_timeout", f"{server}{path}", timeout=0.8)
    assert time.monotonic() - t0 < 1.6


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    fails("download_failed", f"http://127.0.0.1:{port}/audio.wav")


def test_https_to_a_plain_http_server_fails_cleanly(server):
    port = server.rsplit(":", 1)[1]
    fails("download_failed", f"https://127.0.0.1:{port}/audio.wav")


def test_deadline_covers_a_stalled_tls_handshake():
    # A server that accepts the connection and never says a word: the handshake must not outlive the deadline.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        fails("download_timeout", f"https://127.0.0.1:{port}/a.m4a", timeout=0.5)
        assert time.monotonic() - t0 < 1.2


# ---------------------------------------------------------------------------------------------------------------
# the SSRF battery: refused before any connection
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture()
def no_connect(monkeypatch):
    """Fail the test if anything opens a connection; return the resolver calls seen."""
    def forbidden(self):
        raise AssertionError(f"connection attempted to {self._address}")

    monkeypatch.setattr(fetch_module._PinnedHTTPConnection, "connect", forbidden)
    return forbidden


STUB_DNS = {
    "localhost": ["127.0.0.1", "::1"],
    "internal.test": ["10.0.0.5"],
    "mixed.test": ["93.184.216.34", "192.168.1.10"],  # one public, one private: refused
    "v6private.test": ["fd00::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "metadata.test": ["169.254.169.254"],
}


def stub_resolver(host, port, *args, **kwargs):
    if host not in STUB_DNS:
        raise AssertionError(f"unexpected DNS lookup of {host!r}")
    return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in STUB_DNS[host]]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://127.1.2.3:8080/x", "http://localhost/", "http://LOCALHOST./",
    "http://0.0.0.0/", "http://0/", "http://[::1]/", "http://[::]/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/", "http://2130706433/", "http://0x7f.1/", "http://0x7f000001/",
    "http://017700000001/", "http://0177.0.0.1/", "http://127.1/",
    "http://10.0.0.5/", "http://10.255.255.255/", "http://172.16.0.1/", "http://172.31.255.1/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/",
    "http://100.64.0.1/", "http://100.127.255.254/", "http://224.0.0.1/", "http://239.255.255.250/",
    "http://240.0.0.1/", "http://255.255.255.255/", "http://192.0.0.8/", "http://198.18.0.1/",
    "http://[fd00::1]/", "http://[fc00::5]/", "http://[ff02::1]/", "http://[2002:7f00:1::]/",
    "http://[2001::8000:ffff:80ff:fffe]/", "http://[64:ff9b::a00:5]/", "http://[::127.0.0.1]/",
    "https://internal.test/", "http://mixed.test/", "http://v6private.test/", "http://mapped.test/",
    "http://metadata.test/",
])
def test_blocked_addresses(url, no_connect):
    with pytest.raises(FetchError) as info:
        fetch_url(url, max_bytes=MAX, timeout=1.0, resolver=stub_resolver)
    assert info.value.code == "blocked_address", info.value
    assert info.value.status == 400


@pytest.mark.parametrize("url", ["http://10.0.0.5/", "http://192.168.0.1/", "http://169.254.169.254/",
                                 "http://internal.test/", "http://[fd00::1]/", "http://100.64.0.1/"])
def test_allow_loopback_allows_only_loopback(url, no_connect):
    with pytest.raises(FetchError) as info:
        fetch_url(url, max_bytes=MAX, timeout=1.0, resolver=stub_resolver, allow_loopback=True)
    assert info.value.code == "blocked_address"


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/a.mp3", "gopher://127.0.0.1:70/", "dict://localhost:11211/",
    "javascript:alert(1)", "data:audio/wav;base64,AAAA", "//example.com/a.mp3", "example.com/a.mp3",
    "http://user:pass@example.com/a.mp3", "http://user@example.com/", "http://:pw@example.com/",
    "http:///a.mp3", "http://", "", "   ", "http://exa mple.com/", "http://example.com/a\tb",
    "http://example.com/a\r\nX-Injected: 1",
    "http://[::1/", "http://example.com:99999/", "http://example.com:0/", "http://example.com:port/",
    "http://1.2.3.4.5/", "http://256.1.1.1/", "http://09.1.1.1/", "http://[fe80::1%25eth0]/",
    "http://" + "a" * 5000 + ".com/",
])
def test_invalid_urls(url, no_connect):
    with pytest.raises(FetchError) as info:
        fetch_url(url, max_bytes=MAX, timeout=1.0, resolver=stub_resolver)
    assert info.value.code == "invalid_url", info.value
    assert info.value.status == 400


def test_numeric_hosts_are_never_sent_to_dns(no_connect):
    def resolver(*args, **kwargs):
        raise AssertionError("numeric host sent to the resolver")

    for url in ("http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(FetchError) as info:
            fetch_url(url, max_bytes=MAX, resolver=resolver)
        assert info.value.code == "blocked_address"
        assert "127.0.0.1" in info.value.message


@pytest.mark.parametrize("error", [socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
                                   socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")])
def test_a_host_that_does_not_resolve_is_the_clients_mistake_422(no_connect, error):
    def resolver(*args, **kwargs):
        raise error

    with pytest.raises(FetchError) as info:
        fetch_url("http://no-such-host.test/a.mp3", max_bytes=MAX, resolver=resolver)
    assert info.value.code == "unresolvable_host" and info.value.status == 422
    assert "no-such-host.test" in info.value.message


def test_a_host_with_no_address_is_unresolvable(no_connect):
    with pytest.raises(FetchError) as info:
        fetch_url("http://empty.test/a.mp3", max_bytes=MAX, resolver=lambda *args, **kwargs: [])
    assert info.value.code == "unresolvable_host" and info.value.status == 422


# ---------------------------------------------------------------------------------------------------------------
# normalize_url: the cache key
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url,expected", [
    ("HTTP://Example.COM/Song.mp3", "http://example.com/Song.mp3"),
    ("https://example.com:443/a?b=1&c=2#t=30", "https://example.com/a?b=1&c=2"),
    ("http://example.com:80", "http://example.com/"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("https://example.com:80/a", "https://example.com:80/a"),
    ("  https://cdn.example.com/p/preview.m4a?token=AbC  ", "https://cdn.example.com/p/preview.m4a?token=AbC"),
    ("http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x"),
    ("http://bücher.example/ä?q=é", "http://xn--bcher-kva.example/%C3%A4?q=%C3%A9"),
    ("http://example.com/%C3%A4?a=%20b", "http://example.com/%C3%A4?a=%20b"),
    ("http://example.com/my song.mp3", "http://example.com/my%20song.mp3"),
])
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


def test_normalize_url_is_idempotent_and_rejects_garbage():
    url = "HTTPS://Audio.Example.com:443/x/y.m4a?q=1#frag"
    assert normalize_url(normalize_url(url)) == normalize_url(url)
    for bad in ("ftp://example.com/", "not a url", "http://user:pw@example.com/"):
        with pytest.raises(FetchError) as info:
            normalize_url(bad)
        assert info.value.code == "invalid_url"


def test_normalize_url_is_cached_but_errors_are_raised_every_time():
    from backend.audio.fetch import _normalized
    url = "HTTP://Example.COM:80/a b?x=1#frag"
    assert normalize_url(url) == normalize_url(url) == "http://example.com/a%20b?x=1"
    hits = _normalized.cache_info().hits
    normalize_url(url)
    assert _normalized.cache_info().hits == hits + 1
    for _ in range(2):
        with pytest.raises(FetchError) as error:
            normalize_url("ftp://example.com/a")
        assert error.value.code == "invalid_url"
    long_url = "http://example.com/" + "a" * 2000
    assert normalize_url(long_url) == long_url  # too long to cache, still normalized
    with pytest.raises(FetchError):
        normalize_url(None)  # not a string: refused, not a TypeError from the cache
