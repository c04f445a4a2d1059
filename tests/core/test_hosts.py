"""Organization URL allow-list, ADO_SERVER_HOSTS parsing and webhook URL checks (shared/core/hosts.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from shared.core.errors import ConfigError, InvalidInput
from shared.core.hosts import (
    is_services_url,
    organization_url,
    parse_server_hosts,
    webhook_url_problem,
)

SERVER = frozenset({"tfs.contoso.com", "ado.fabrikam.local:8443", "10.0.0.5", "[fd00::5]:8080"})


# ---------------------------------------------------------------- accepted, normalised


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://dev.azure.com/contoso/", "https://dev.azure.com/contoso/"),
        ("https://dev.azure.com/contoso", "https://dev.azure.com/contoso/"),
        ("https://DEV.Azure.com/Contoso/", "https://dev.azure.com/Contoso/"),
        ("HTTPS://dev.azure.com/contoso/", "https://dev.azure.com/contoso/"),
        ("https://dev.azure.com:443/contoso/", "https://dev.azure.com/contoso/"),
        ("https://dev.azure.com/a/", "https://dev.azure.com/a/"),
        ("https://dev.azure.com/my-org-2/", "https://dev.azure.com/my-org-2/"),
        ("https://dev.azure.com/" + "a" * 50 + "/", "https://dev.azure.com/" + "a" * 50 + "/"),
        ("https://contoso.visualstudio.com/", "https://contoso.visualstudio.com/"),
        ("https://contoso.visualstudio.com", "https://contoso.visualstudio.com/"),
        ("https://Contoso.VisualStudio.com/", "https://contoso.visualstudio.com/"),
        ("https://tfs.contoso.com/tfs/DefaultCollection/", "https://tfs.contoso.com/tfs/DefaultCollection/"),
        ("https://TFS.contoso.com:443/tfs/DefaultCollection", "https://tfs.contoso.com/tfs/DefaultCollection/"),
        ("https://tfs.contoso.com/DefaultCollection/", "https://tfs.contoso.com/DefaultCollection/"),
        ("https://tfs.contoso.com/TFS/my_coll.v2/", "https://tfs.contoso.com/TFS/my_coll.v2/"),
        ("https://ado.fabrikam.local:8443/tfs/Main/", "https://ado.fabrikam.local:8443/tfs/Main/"),
        ("https://10.0.0.5/tfs/Main/", "https://10.0.0.5/tfs/Main/"),
        ("https://[fd00::5]:8080/Main/", "https://[fd00::5]:8080/Main/"),
        ("https://[fd00:0::5]:8080/Main/", "https://[fd00::5]:8080/Main/"),
    ],
)
def test_accepted_urls_are_normalised(value: str, expected: str) -> None:
    assert organization_url(value, server_hosts=SERVER) == expected
    assert organization_url(expected, server_hosts=SERVER) == expected


# ---------------------------------------------------------------- refused


HOSTILE = [
    # not https
    "http://dev.azure.com/contoso/",
    "ftp://dev.azure.com/contoso/",
    "//dev.azure.com/contoso/",
    "dev.azure.com/contoso/",
    "https:/dev.azure.com/contoso/",
    "https:dev.azure.com/contoso/",
    "javascript:alert(1)//dev.azure.com/contoso/",
    # any other host
    "https://evil.example/",
    "https://evil.example/contoso/",
    "https://dev.azure.com.evil.example/contoso/",
    "https://evildev.azure.com/contoso/",
    "https://vssps.dev.azure.com/contoso/",
    "https://contoso.visualstudio.com.evil.example/",
    "https://visualstudio.com/",
    "https://a.b.visualstudio.com/",
    "https://contoso.visualstudio.co/",
    "https://dev.azure.com./contoso/",
    "https://contoso.visualstudio.com./",
    "https://tfs.contoso.com.evil.example/tfs/Main/",
    "https://tfs.contoso.com:8443/tfs/Main/",  # listed without that port
    "https://ado.fabrikam.local/tfs/Main/",  # listed only with :8443
    # user info
    "https://user@dev.azure.com/contoso/",
    "https://user:pw@dev.azure.com/contoso/",
    "https://dev.azure.com@evil.example/contoso/",
    "https://evil.example@dev.azure.com/contoso/",
    "https://dev.azure.com/contoso/@evil.example/",
    # query, fragment
    "https://dev.azure.com/contoso/?x=1",
    "https://dev.azure.com/contoso/#frag",
    "https://dev.azure.com/contoso?",
    "https://dev.azure.com#@evil.example/contoso/",
    # backslashes
    "https://dev.azure.com\\@evil.example/contoso/",
    "https://evil.example\\dev.azure.com/contoso/",
    "https://dev.azure.com/contoso\\",
    "https:\\\\dev.azure.com\\contoso\\",
    # percent-encoding
    "https://dev.azure.com/contoso%2F..%2Fevil/",
    "https://dev.azure.com/%2e%2e/",
    "https://dev.azure.com/contoso%2f/",
    "https://dev%2Eazure.com/contoso/",
    "https://dev.azure.com/con%74oso/",
    # dot segments, empty segments
    "https://dev.azure.com/./",
    "https://dev.azure.com/../",
    "https://dev.azure.com/contoso/../",
    "https://dev.azure.com/contoso/./",
    "https://dev.azure.com//contoso/",
    "https://tfs.contoso.com/tfs/../Main/",
    "https://tfs.contoso.com/tfs/./",
    "https://tfs.contoso.com//Main/",
    # control characters, whitespace, non-ASCII
    "https://dev.azure.com/contoso/\n",
    "https://dev.azure.com/con\ttoso/",
    "https://dev.azure.com/contoso/\x00",
    "https://dev.azure.com\r\n/contoso/",
    " https://dev.azure.com/contoso/",
    "https://dev.azure.com/contoso/ ",
    "https://dev.azure.com/con toso/",
    "https://dev.azure.com/contoso/\x7f",
    "https://dev.azure.com/contoso/\u200b",
    "https://dev.\u0430zure.com/contoso/",  # Cyrillic a
    "https://contoso.visualstudio.com\u2215evil/",
    # IP literals not listed
    "https://127.0.0.1/contoso/",
    "https://127.0.0.1/tfs/Main/",
    "https://[::1]/tfs/Main/",
    "https://169.254.169.254/metadata/",
    "https://10.0.0.6/tfs/Main/",
    "https://[fd00::5]/Main/",  # listed only with :8080
    "https://2130706433/tfs/Main/",
    "https://0x7f000001/tfs/Main/",
    # malformed authority
    "https://",
    "https:///contoso/",
    "https://:443/contoso/",
    "https://dev.azure.com:/contoso/",
    "https://dev.azure.com:0/contoso/",
    "https://dev.azure.com:65536/contoso/",
    "https://dev.azure.com:08443/contoso/",
    "https://dev.azure.com:8443/contoso/",
    "https://dev.azure.com:abc/contoso/",
    "https://[fd00::5/Main/",
    "https://fd00::5/Main/",
    "https://[not-ip]/Main/",
    "https://[fd00::5]x/Main/",
    "https://dev..azure.com/contoso/",
    "https://-dev.azure.com/contoso/",
    "https://dev_azure.com/contoso/",
    # organization name rules and trailing junk (Services)
    "https://dev.azure.com/",
    "https://dev.azure.com",
    "https://dev.azure.com/-contoso/",
    "https://dev.azure.com/contoso-/",
    "https://dev.azure.com/con_toso/",
    "https://dev.azure.com/con.toso/",
    "https://dev.azure.com/" + "a" * 51 + "/",
    "https://dev.azure.com/contoso/project/",
    "https://dev.azure.com/contoso/_apis/",
    "https://dev.azure.com/contoso//",
    "https://dev.azure.com/contoso/~",
    "https://contoso.visualstudio.com/DefaultCollection/",
    "https://contoso.visualstudio.com/contoso/",
    "https://-contoso.visualstudio.com/",
    "https://contoso.visualstudio.com:8443/",
    "https://" + "a" * 51 + ".visualstudio.com/",
    # collection rules and trailing junk (Server)
    "https://tfs.contoso.com/",
    "https://tfs.contoso.com/tfs/",
    "https://tfs.contoso.com/tfs/Main/extra/",
    "https://tfs.contoso.com/other/Main/",
    "https://tfs.contoso.com/.hidden/",
    "https://tfs.contoso.com/tfs/Main./",
    "https://tfs.contoso.com/tfs/" + "c" * 65 + "/",
    "https://tfs.contoso.com/tfs/Main/_apis/",
    # not a string, empty, too long
    "",
    "https://dev.azure.com/" + "a" * 600 + "/",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_urls_are_refused_on_domain_name_with_422(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        organization_url(value, server_hosts=SERVER)
    assert caught.value.field == "domain_name"
    assert caught.value.status == 422
    assert caught.value.message.startswith("domain_name ")
    assert "\n" not in caught.value.message and "\x00" not in caught.value.message


@pytest.mark.parametrize("value", [None, 42, b"https://dev.azure.com/contoso/"])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        organization_url(value, server_hosts=SERVER)  # type: ignore[arg-type]


def test_server_hosts_are_refused_without_the_allow_list() -> None:
    with pytest.raises(InvalidInput, match="ADO_SERVER_HOSTS"):
        organization_url("https://tfs.contoso.com/tfs/Main/", server_hosts=frozenset())


def test_refusals_say_why() -> None:
    def reason(value: str) -> str:
        with pytest.raises(InvalidInput) as caught:
            organization_url(value, server_hosts=SERVER)
        return caught.value.message

    assert "https" in reason("http://dev.azure.com/contoso/")
    assert "user name" in reason("https://user@dev.azure.com/contoso/")
    assert "query or fragment" in reason("https://dev.azure.com/contoso/?a")
    assert "backslash" in reason("https://dev.azure.com\\contoso/")
    assert "percent" in reason("https://dev.azure.com/%2e%2e/")
    assert ". or .." in reason("https://dev.azure.com/../")
    assert "control" in reason("https://dev.azure.com/contoso/\t")
    assert "IP address" in reason("https://127.0.0.1/tfs/Main/")
    assert "evil.example" in reason("https://evil.example/contoso/")
    assert "dev.azure.com/{org}" in reason("https://dev.azure.com/contoso/project/")


# ---------------------------------------------------------------- is_services_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://dev.azure.com/contoso/", True),
        ("https://contoso.visualstudio.com/", True),
        ("https://tfs.contoso.com/tfs/Main/", False),
        ("https://evil.example/contoso/", False),
        ("http://dev.azure.com/contoso/", False),
        ("https://dev.azure.com/contoso/x/", False),
        ("", False),
    ],
)
def test_is_services_url(url: str, expected: bool) -> None:
    assert is_services_url(url) is expected


# ---------------------------------------------------------------- ADO_SERVER_HOSTS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, frozenset()),
        ("", frozenset()),
        ("  ", frozenset()),
        ("tfs.contoso.com", {"tfs.contoso.com"}),
        ("TFS.Contoso.com:443", {"tfs.contoso.com"}),
        (" tfs.contoso.com , ado.fabrikam.local:8443 ,", {"tfs.contoso.com", "ado.fabrikam.local:8443"}),
        ("10.0.0.5,[FD00:0::5]:8080,[::1]", {"10.0.0.5", "[fd00::5]:8080", "[::1]"}),
        ("localhost:8443", {"localhost:8443"}),
    ],
)
def test_parse_server_hosts(value: str | None, expected: set[str]) -> None:
    assert parse_server_hosts(value) == frozenset(expected)


@pytest.mark.parametrize(
    "value",
    [
        "https://tfs.contoso.com",
        "tfs.contoso.com/tfs",
        "*.contoso.com",
        "tfs.contoso.com:",
        "tfs.contoso.com:0",
        "tfs.contoso.com:99999",
        "user@tfs.contoso.com",
        "tfs contoso.com",
        "tfs.contoso.com.",
        "fd00::5",
        "[fd00::5",
        "tfs_contoso.com",
        "ok.example,bad host",
    ],
)
def test_malformed_server_hosts_name_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="ADO_SERVER_HOSTS"):
        parse_server_hosts(value)


def test_parsed_hosts_match_organization_urls() -> None:
    hosts = parse_server_hosts("TFS.contoso.com:443, localhost:8443")
    assert organization_url("https://tfs.contoso.com/tfs/Main/", server_hosts=hosts)
    assert organization_url("https://localhost:8443/contoso/", server_hosts=hosts) == "https://localhost:8443/contoso/"
    with pytest.raises(InvalidInput):
        organization_url("https://localhost/contoso/", server_hosts=hosts)


# ---------------------------------------------------------------- property: accepted means allowed


def allowed(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    authority = parts.netloc.lower()
    if parts.username or parts.password or parts.query or parts.fragment or not url.endswith("/"):
        return False
    if host == "dev.azure.com" and parts.port is None:
        return True
    if host.endswith(".visualstudio.com") and host.count(".") == 2 and parts.port is None:
        return True
    return authority in SERVER


VALID = [
    "https://dev.azure.com/contoso/",
    "https://contoso.visualstudio.com/",
    "https://tfs.contoso.com/tfs/DefaultCollection/",
    "https://ado.fabrikam.local:8443/Main/",
    "https://10.0.0.5/tfs/Main/",
    "https://[fd00::5]:8080/Main/",
]
PIECES = [
    "@evil.example",
    "evil.example",
    ".evil.example",
    "evil.",
    "\\",
    "%2e",
    "%2f",
    "/..",
    "/.",
    "//",
    "?",
    "#",
    " ",
    "\t",
    "\n",
    "\x00",
    ":8443",
    ":443",
    ":",
    "[",
    "]",
    "\u0430",
    "-",
    "_",
    "/x",
    "tfs/",
    "/tfs",
    "http",
    "s",
    ".",
]


@st.composite
def near_valid_urls(draw: st.DrawFn) -> str:
    """A valid URL with up to three insertions, deletions or case flips: the boundary of the allow-list."""
    url = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(url)))
        action = draw(st.sampled_from(["insert", "delete", "swapcase"]))
        if action == "insert":
            url = url[:at] + draw(st.sampled_from(PIECES)) + url[at:]
        elif action == "delete":
            url = url[:at] + url[at + 1 :]
        else:
            url = url[:at] + url[at:].swapcase()
    return url


URLS = near_valid_urls()


def accepts(value: str) -> bool:
    try:
        organization_url(value, server_hosts=SERVER)
    except InvalidInput:
        return False
    return True


def test_the_url_strategy_reaches_accepted_urls() -> None:
    # Guards the property below against passing vacuously.
    search = settings(database=None, max_examples=5000)
    for form in ("https://dev.azure.com/", ".visualstudio.com/", "/tfs/", ":8080/"):
        assert find(URLS, lambda value, form=form: accepts(value) and form in value, settings=search)


@settings(max_examples=800, deadline=None)
@given(URLS)
def test_whatever_is_accepted_has_an_allowed_host(value: str) -> None:
    try:
        result = organization_url(value, server_hosts=SERVER)
    except InvalidInput:
        return
    assert allowed(result), (value, result)
    assert organization_url(result, server_hosts=SERVER) == result


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_escapes_the_allow_list(value: str) -> None:
    try:
        result = organization_url(value, server_hosts=SERVER)
    except InvalidInput:
        return
    assert allowed(result), (value, result)


# ---------------------------------------------------------------- webhook URL


@pytest.mark.parametrize(
    "url",
    [
        "https://func-abc.azurewebsites.net/api/vsts/issue-updated",
        "HTTPS://func-abc.azurewebsites.net/api/vsts/issue-updated",
        "https://hooks.example.com:8443/api/vsts/issue-updated?code=abc",
        "http://localhost:7071/api/vsts/issue-updated",
        "http://127.0.0.1:7071/api/vsts/issue-updated",
        "http://[::1]:7071/api/vsts/issue-updated",
        "http://LOCALHOST/api",
    ],
)
def test_acceptable_webhook_urls(url: str) -> None:
    assert webhook_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("http://func-abc.azurewebsites.net/api/vsts/issue-updated", "https"),
        ("http://10.0.0.5/api", "https"),
        ("http://127.0.0.1.nip.io/api", "https"),
        ("http://localhost.evil.example/api", "https"),
        ("http://127.0.0.2/api", "https"),
        ("ftp://example.com/api", "https"),
        ("func-abc.azurewebsites.net/api", "https"),
        ("https:///api", "no host"),
        ("https://user:pw@example.com/api", "user name"),
        ("https://example.com@evil.example/api", "user name"),
        ("https://example.com/api#x", "fragment"),
        ("https://example.com/api#", "fragment"),
        ("https://example.com:99999/api", "port"),
        ("https://example.com:abc/api", "port"),
        ("https://example.com/a pi", "whitespace"),
        ("https://example.com/api\n", "whitespace"),
        ("https://example.com\\@evil.example/api", "backslash"),
        ("https://exämple.com/api", "ASCII"),
    ],
)
def test_unacceptable_webhook_urls_say_why(url: str, reason: str) -> None:
    problem = webhook_url_problem(url)
    assert problem is not None and reason in problem
