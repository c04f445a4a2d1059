"""Which Azure DevOps URLs the bundle may send credentials to, and which webhook URLs it may register.

Pure: no I/O. An install request names the organization URL (`domain_name`); the bundle later sends
OAuth refreshes and bearer tokens or PATs there, so only Azure DevOps Services hosts and the Azure
DevOps Server hosts an operator lists in `ADO_SERVER_HOSTS` are accepted, in their documented forms:

- `https://dev.azure.com/{org}/` and `https://{org}.visualstudio.com/` (Services), see
  https://learn.microsoft.com/azure/devops/extend/develop/work-with-urls
- `https://{host}[:port]/tfs/{collection}/` or `https://{host}[:port]/{collection}/` (Server).

Parsing is done by hand on a small character set rather than with `urllib.parse`, which is
lenient by design (it drops tabs and newlines, accepts `user@host`, backslashes and
percent-encoding), so every accepted string has exactly one reading.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

from shared.core.errors import ConfigError, InvalidInput

FIELD = "domain_name"
SERVER_HOSTS_SETTING = "ADO_SERVER_HOSTS"
SERVICES_HOST = "dev.azure.com"
LEGACY_SUFFIX = ".visualstudio.com"
MAX_URL_LENGTH = 512
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Organization names: letters, digits and hyphens, 1-50 characters, no hyphen at either end.
_ORG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")
# Collection names (Server): letters, digits, `-`, `_`, `.`; starting with a letter or digit, not
# ending with `.`. Spaces (which would need percent-encoding) are not supported.
_COLLECTION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_-])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
# Everything a valid organization URL can contain. `@ ? # % \`, whitespace, controls and
# non-ASCII (look-alike hosts) are refused before any parsing.
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/\[\]-]*")

SERVICES_FORMS = "https://dev.azure.com/{org}/ or https://{org}.visualstudio.com/"


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"{FIELD} {reason}", field=FIELD, status=422)


def _host_port(authority: str) -> tuple[str, int | None]:
    """`host[:port]` or `[v6][:port]` → (lowercase host without brackets, port or None).

    Raises ValueError with the reason when the authority is not well formed.
    """
    if authority.startswith("["):
        host, bracket, rest = authority[1:].partition("]")
        if not bracket:
            raise ValueError("has an unclosed [ in its host")
        try:
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise ValueError("has an invalid IPv6 address") from None
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ValueError("has junk after its host")
    else:
        if "[" in authority or "]" in authority:
            raise ValueError("has a misplaced [ or ] in its host")
        host, colon, port_text_ = authority.partition(":")
        port_text = port_text_ if colon else None
        if not _is_ip(host):
            labels = host.lower().split(".")
            if not all(_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
                raise ValueError("has an invalid host name")
    port = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
            raise ValueError("has an invalid port")
        port = int(port_text)
    return host.lower(), port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _authority(host: str, port: int | None) -> str:
    """Canonical `host[:port]`: IPv6 in brackets, the default port 443 left out."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port in (None, 443) else f"{shown}:{port}"


def parse_server_hosts(value: str | None) -> frozenset[str]:
    """The Azure DevOps Server hosts of the `ADO_SERVER_HOSTS` setting, canonical (`host[:port]`).

    Entries are comma-separated `host`, `host:port`, `[ipv6]` or `[ipv6]:port`; hosts are
    compared case-insensitively and `:443` is the same as no port. Unset or empty: no Server host.

    Raises:
        ConfigError: an entry is not a plain host (a scheme, path, wildcard or bad port).
    """
    hosts: set[str] = set()
    for position, raw in enumerate((value or "").split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        problem = None
        if not _URL_CHARS.fullmatch(entry) or "/" in entry:
            problem = "is not a host[:port] (no scheme, path or wildcard)"
        else:
            try:
                host, port = _host_port(entry)
            except ValueError as error:
                problem = str(error)
        if problem:
            raise ConfigError(f"Setting {SERVER_HOSTS_SETTING}: entry {position} {problem}.")
        hosts.add(_authority(host, port))
    return frozenset(hosts)


def organization_url(value: str, *, server_hosts: frozenset[str]) -> str:
    """The canonical organization URL (ending in `/`) for `value`, or InvalidInput(422) on `domain_name`.

    Accepts Azure DevOps Services URLs (`https://dev.azure.com/{org}/`, `https://{org}.visualstudio.com/`,
    kept in the form given, host lowercased) and, for hosts in `server_hosts` (see
    `parse_server_hosts`), Azure DevOps Server collection URLs `https://host[:port]/tfs/{collection}/`
    or `https://host[:port]/{collection}/`. A missing trailing `/` is added and `:443` dropped;
    everything else that is not exactly one of these forms is refused.
    """
    if not isinstance(value, str) or not value:
        raise _refuse("must be a non-empty string")
    if len(value) > MAX_URL_LENGTH:
        raise _refuse(f"is longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARS.fullmatch(value):
        raise _refuse(_bad_characters(value))
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() != "https":
        raise _refuse("must be an https:// URL")
    authority, _, path = rest.partition("/")
    try:
        host, port = _host_port(authority)
    except ValueError as error:
        raise _refuse(str(error)) from None
    segments = path.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # the trailing slash
    if any(segment in (".", "..") for segment in segments):
        raise _refuse("must not contain . or .. path segments")
    if any(segment == "" for segment in segments):
        raise _refuse("must not contain empty path segments (//)")

    authority = _authority(host, port)
    if host == SERVICES_HOST or host.endswith(LEGACY_SUFFIX):
        return _services_url(host, port, segments)
    if authority in server_hosts:
        return _server_url(authority, segments)
    if _is_ip(host):
        raise _refuse(f"may be an IP address only when it is listed in {SERVER_HOSTS_SETTING}")
    raise _refuse(f"host {authority} is neither Azure DevOps Services nor listed in {SERVER_HOSTS_SETTING}")


def _services_url(host: str, port: int | None, segments: list[str]) -> str:
    if port not in (None, 443):
        raise _refuse(f"must not name a port for Azure DevOps Services ({SERVICES_FORMS})")
    if host == SERVICES_HOST:
        if len(segments) == 1 and _ORG.fullmatch(segments[0]):
            return f"https://{SERVICES_HOST}/{segments[0]}/"
    else:
        org = host[: -len(LEGACY_SUFFIX)]
        if not segments and _ORG.fullmatch(org):
            return f"https://{host}/"
    raise _refuse(f"must be {SERVICES_FORMS} (org: letters, digits, hyphens, 1-50 characters)")


def _server_url(authority: str, segments: list[str]) -> str:
    if len(segments) == 2 and segments[0].lower() == "tfs":
        virtual_directory, collection = segments
        if _COLLECTION.fullmatch(collection):
            return f"https://{authority}/{virtual_directory}/{collection}/"
    elif len(segments) == 1 and segments[0].lower() != "tfs" and _COLLECTION.fullmatch(segments[0]):
        return f"https://{authority}/{segments[0]}/"
    raise _refuse(
        f"must be https://{authority}/tfs/{{collection}}/ or https://{authority}/{{collection}}/ for "
        "Azure DevOps Server (collection: letters, digits, '-', '_', '.')"
    )


def _bad_characters(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in value):
        return "must not contain whitespace or control characters"
    if not value.isascii():
        return "must be ASCII (use the punycode form of an internationalised host)"
    if "\\" in value:
        return "must not contain backslashes"
    if "@" in value:
        return "must not contain a user name (user@host)"
    if "?" in value or "#" in value:
        return "must not contain a query or fragment"
    if "%" in value:
        return "must not contain percent-encoding"
    return "contains a character not allowed in an organization URL"


def is_services_url(url: str) -> bool:
    """True when `url` is an Azure DevOps Services organization URL `organization_url` accepts."""
    try:
        organization_url(url, server_hosts=frozenset())
    except InvalidInput:
        return False
    return True


def webhook_url_problem(url: str) -> str | None:
    """None when `url` may be registered as the service-hook target, else the reason.

    Acceptable: an absolute https URL with a host and no user info or fragment; plain http only
    for a loopback host (localhost, 127.0.0.1, ::1), which is what local runs use.
    """
    if not isinstance(url, str) or not url:
        return "the webhook URL is empty"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url) or "\\" in url:
        return "the webhook URL contains whitespace, control characters or backslashes"
    if not url.isascii():
        return "the webhook URL must be ASCII"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "the webhook URL is not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return "the webhook URL must be an https:// URL"
    if not parts.hostname:
        return "the webhook URL has no host"
    if "@" in parts.netloc:
        return "the webhook URL must not contain a user name or password"
    if "#" in url:
        return "the webhook URL must not contain a fragment"
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "the webhook URL has an invalid port"
    if scheme == "http" and parts.hostname.lower() not in LOOPBACK_HOSTS:
        return "the webhook URL must use https (plain http only for localhost, 127.0.0.1 or ::1)"
    return None
