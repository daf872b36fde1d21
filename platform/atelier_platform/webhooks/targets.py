"""Which URLs a webhook may call: the guard against server-side request forgery.

A webhook URL is chosen by a project's owner, but the request leaves from inside the operator's
network, so an unchecked URL would let an owner reach the cloud metadata service, the database or
an internal admin page. A URL must be http(s), and every address its host resolves to must be a
public one. The check runs when the URL is saved (a clear 400) and again at every delivery, and
the delivery connects to the very address that was checked: a DNS answer that changes between
the check and the request (DNS rebinding) cannot redirect it.

``ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true`` lets an operator of a closed network (or a test)
reach the addresses such a network has (``CLOSED_NETWORK``: loopback, private, shared and link-local).
Multicast, unspecified, reserved, documentation and benchmarking addresses are no host's address on any
network and stay refused.

At delivery the lookup is part of the attempt and ends by the attempt's deadline (``LookupTimedOut``):
``getaddrinfo`` has no timeout of its own, and glibc waits for a dead nameserver 10-30 s.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from atelier_platform.config import get_config

MAX_URL_LENGTH = 2000
#: Characters with a meaning in a URL's path and query (RFC 3986), and % of what is already encoded.
URL_PUNCTUATION = "/?:@!$&'()*+,;=%[]"

#: Lookups of one process left waiting on a resolver that does not answer, at most (see ``_LookupThreads``).
MAX_WAITING_LOOKUPS = 8

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(ValueError):
    """The URL is malformed, cannot be resolved, or reaches an address webhooks may not call. The message is
    English (the API's, the delivery log's); ``code`` says why as a stable word and ``params`` the values the
    message names, for a reader in another language (the dashboard)."""

    def __init__(self, message: str, *, code: str, **params) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class LookupTimedOut(UnsafeTarget):
    """The host's DNS lookup did not answer by the deadline. The message completes "Timed out after N s: ..."."""

    def __init__(self, message: str, *, host: str, code: str = "dns_lookup_no_answer", **params) -> None:
        super().__init__(message, code=code, host=host, **params)
        self.host = host


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name the receiver expects (Host header, TLS server name)
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]  # every address the host resolved to, all checked


def parse_url(url: str) -> tuple[str, str, int, str]:
    """Syntax only: (scheme, host, port, path with query)."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeTarget("Give the URL to deliver to, e.g. https://example.com/hooks/atelier.", code="url_missing")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"The URL is longer than {MAX_URL_LENGTH} characters.", code="url_too_long",
                           limit=MAX_URL_LENGTH)
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeTarget("The URL contains spaces or control characters.", code="url_has_spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"The URL cannot be parsed: {exc}.", code="url_unparsable", error=str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeTarget("Only http:// and https:// URLs can receive webhooks.", code="url_not_http")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("Credentials in the URL are not supported; verify deliveries by their signature instead.",
                           code="url_has_credentials")
    if parts.fragment:
        raise UnsafeTarget("The URL must not have a #fragment.", code="url_has_fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeTarget("The URL has no host.", code="url_without_host")
    try:
        host = host.encode("idna").decode("ascii")  # an internationalised name as DNS, TLS and Host see it
    except UnicodeError:
        raise UnsafeTarget(f"The host name {host!r} is not a valid domain name.", code="host_name_invalid",
                           host=host) from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # The request line is ASCII: other characters are sent percent-encoded (as browsers do); what is
    # already encoded, and the characters with a meaning in a URL, stay as written.
    return scheme, host, port or (443 if scheme == "https" else 80), quote(path, safe=URL_PUNCTUATION)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """IPv4 addresses that an IPv6 address carries (mapped, NAT64, 6to4, Teredo) reach IPv4 hosts."""
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


#: The addresses of a closed network, which ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS opens (and nothing else):
#: loopback, private (RFC 1918, IPv6 unique local), shared (RFC 6598: carrier-grade NAT, overlay networks) and
#: link-local. ``ipaddress``'s ``is_private`` is wider: it also counts reserved, documentation and benchmarking
#: ranges, which no host of a real network has.
CLOSED_NETWORK = tuple(ipaddress.ip_network(network) for network in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10"))


def in_closed_network(address: IPAddress) -> bool:
    return any(address in network for network in CLOSED_NETWORK if network.version == address.version)


#: Why webhooks may not call an address, by code, in the words that complete "The host resolves to 10.0.0.1, ..."
ADDRESS_PROBLEMS = {
    "unspecified": "an unspecified address",
    "multicast": "a multicast address",
    "loopback": "a loopback address",
    "link_local": "a link-local address (the cloud metadata service 169.254.169.254 is one)",
    "private": "a private address",
    "reserved": "a reserved address",
    "not_global": "not a publicly routable address",
}


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why webhooks may not call this address (a code of ``ADDRESS_PROBLEMS``), or None when they may."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return address_problem(inner, allow_private=allow_private)
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if in_closed_network(address):
        if allow_private:
            return None
        if address.is_loopback:
            return "loopback"
        if address.is_link_local:
            return "link_local"
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not_global"
    return None


class _LookupThreads:
    """DNS lookups with a deadline, each in a thread of its own that the caller waits for until then.

    Nothing interrupts ``getaddrinfo``: a lookup still unanswered at the deadline is left to finish
    on its own (glibc gives up after its timeout) and its answer is dropped. So that a resolver that
    never answers cannot pile such threads up, at most ``limit`` run at once in a process; an attempt
    that finds them all waiting waits for one to end until its deadline, then times out without asking
    the resolver. Daemon threads, not a ThreadPoolExecutor: its threads are joined at interpreter exit,
    so one lookup that never answers would keep a worker process from stopping.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    def getaddrinfo(self, host: str, port: int, deadline: float) -> list:
        if not self._free.acquire(timeout=max(deadline - time.monotonic(), 0)):
            waiting = f"{self.limit} earlier lookup is" if self.limit == 1 else f"{self.limit} earlier lookups are"
            raise LookupTimedOut(f"the DNS lookup of {host!r} could not start ({waiting} still waiting for the resolver).",
                                 host=host, code="dns_lookups_all_waiting", limit=self.limit)
        answer: dict = {}
        done = threading.Event()

        def look_up() -> None:
            try:
                answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except BaseException as exc:  # handed to the caller, who raises it in its own thread
                answer["error"] = exc
            finally:
                self._free.release()
                done.set()

        try:
            threading.Thread(target=look_up, name=f"webhook-lookup {host}", daemon=True).start()
        except BaseException:  # no thread (out of threads or memory): the slot must not be lost with it
            self._free.release()
            raise
        if not done.wait(max(deadline - time.monotonic(), 0)):
            raise LookupTimedOut(f"the DNS lookup of {host!r} got no answer.", host=host)
        if "error" in answer:
            raise answer["error"]
        return answer["infos"]


_lookups = _LookupThreads(MAX_WAITING_LOOKUPS)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int, *, deadline: float | None = None) -> tuple[str, ...]:
    """Every address of ``host``, in the resolver's order. With a ``deadline`` (a ``time.monotonic()``
    value) the lookup ends by then or raises LookupTimedOut; an address needs no lookup and no thread."""
    try:
        if deadline is None or _is_address(host):
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        else:
            infos = _lookups.getaddrinfo(host, port, deadline)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"The host {host!r} cannot be resolved ({exc}).", code="host_not_resolved", host=host,
                           error=str(exc)) from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = sockaddr[0].split("%", 1)[0]  # drop an IPv6 zone id
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise UnsafeTarget(f"The host {host!r} has no addresses.", code="host_without_addresses", host=host)
    return tuple(addresses)


def check_target(url: str, *, allow_private: bool | None = None, deadline: float | None = None) -> Target:
    """Parse, resolve and check a webhook URL. Raises UnsafeTarget with a message for the owner, or
    LookupTimedOut when the lookup has not answered by ``deadline`` (``time.monotonic()``)."""
    if allow_private is None:
        allow_private = get_config().webhooks_allow_private_targets
    scheme, host, port, path = parse_url(url)
    addresses = resolve(host, port, deadline=deadline)
    for text in addresses:
        address = ipaddress.ip_address(text)
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            # Only where the setting is off and would open the address is it worth naming to the owner.
            can_be_allowed = not allow_private and address_problem(address, allow_private=True) is None
            hint = " (an operator can allow private ones with ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true)" if can_be_allowed else ""
            raise UnsafeTarget(f"The host {host!r} resolves to {text}, {ADDRESS_PROBLEMS[problem]}. Webhooks call public "
                               f"addresses only{hint}.", code="address_not_public", host=host, address=text,
                               problem=problem, can_be_allowed=can_be_allowed)
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)


# --- a job's own webhook URL, under an endpoint's (webhooks.services.checked_job_webhook) ---------------

def origin_and_path(url: str) -> tuple[tuple[str, str, int], str] | None:
    """``((scheme, host, port), path)`` of an http(s) URL, None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:  # a port that is no number, an unbalanced IPv6 bracket
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return (parts.scheme.lower(), parts.hostname.lower(), port), parts.path or "/"


def covers(endpoint_url: str, url: str) -> bool:
    """Whether ``url`` lies under the endpoint's URL: same origin, and its path the endpoint's or below it (at a
    ``/``: an endpoint at ``/hooks`` covers ``/hooks/job-1``, never ``/hooks-old``). Queries are the caller's."""
    endpoint, job = origin_and_path(endpoint_url), origin_and_path(url)
    if endpoint is None or job is None or endpoint[0] != job[0]:
        return False
    if any(segment in (".", "..") for segment in unquote(job[1]).split("/")):  # /hooks/../admin is not below /hooks
        return False
    base = endpoint[1].rstrip("/")
    return job[1] == endpoint[1] or job[1].startswith(base + "/")
