"""Per-value normalisers: canonical value, missing, or a reason."""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
import pytest

from apollo_frames.core import normalize as nz

MISSING = [None, float("nan"), np.nan, np.float32("nan"), pd.NA, pd.NaT, np.datetime64("NaT"), decimal.Decimal("NaN"),
           "", "   ", "\t\n", "\u00a0"]  # fmt: skip
NORMALIZERS = [
    nz.normalize_email, nz.normalize_domain, nz.normalize_linkedin_url, nz.normalize_hashed_email,
    nz.normalize_apollo_id, nz.normalize_name,
]  # fmt: skip


@pytest.mark.parametrize("value", MISSING, ids=repr)
def test_missing_values_are_missing_everywhere(value):
    assert nz.is_missing(value)
    assert nz.clean_text(value) == (None, None)
    for fn in NORMALIZERS:
        assert fn(value) == (None, None), fn.__name__


@pytest.mark.parametrize("value", [0, 0.0, False, "0", "x", [], {}, b"", np.int64(0)], ids=repr)
def test_present_values_are_not_missing(value):
    assert not nz.is_missing(value)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("  Hello   \n world\t", "Hello world"),
        ("\ufeffAcme\u200b Corp", "Acme Corp"),
        (42, "42"),
        (np.int64(42), "42"),
        (42.0, "42"),
        (np.float32(3.5), "3.5"),
        (3.25, "3.25"),
        (decimal.Decimal("7"), "7"),
        ("Cafe\u0301", "Café"),  # NFC
    ],
)
def test_clean_text_values(value, expected):
    assert nz.clean_text(value) == (expected, None)


@pytest.mark.parametrize(
    "value, word",
    [(True, "boolean"), (np.bool_(False), "boolean"), ([1], "list"), ({"a": 1}, "dict"), (b"abc", "bytes"),
     (float("inf"), "inf"), ("a\x00b", "control")],
)  # fmt: skip
def test_clean_text_refuses_with_the_type_named(value, word):
    out, why = nz.clean_text(value)
    assert out is None and word in why


def test_clean_text_length_limit():
    assert nz.clean_text("x" * 10240) == (None, "value too long (10240 characters, limit 512)")
    assert nz.clean_text("x" * 512) == ("x" * 512, None)
    assert nz.clean_text("x" * 20, max_len=10)[1] == "value too long (20 characters, limit 10)"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Bob@Acme.Example", "bob@acme.example"),
        ("  mailto:BOB@acme.example ", "bob@acme.example"),
        ("MAILTO:bob@acme.example?subject=hi", "bob@acme.example"),
        ("<bob@acme.example>", "bob@acme.example"),
        ("Bob Smith <bob.smith+tag@acme.co.uk>", "bob.smith+tag@acme.co.uk"),
        ("Zoë.Łukasz@Example.example", "zoë.łukasz@example.example"),
        ("jose@bücher.example", "jose@bücher.example"),
        ("a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),
        ("bob@acme.example.", "bob@acme.example"),
    ],
)
def test_email_accepts(value, expected):
    assert nz.normalize_email(value) == (expected, None)


@pytest.mark.parametrize(
    "value",
    ["bob", "bob@", "@acme.example", "bob@acme", "bob@@acme.example", "bob@acme.c0m", "bo b@acme.example",
     "bob@acme .example", "bob..x@acme.example", ".bob@acme.example", "bob@-acme.example", "a@b@c.example",
     42, 3.5, "email_not_unlocked@domain"],
)  # fmt: skip
def test_email_rejects_with_reason(value):
    out, why = nz.normalize_email(value)
    assert out is None and why.startswith("invalid email '")


def test_email_reason_truncates_echo_and_length():
    out, why = nz.normalize_email("z" * 300)
    assert out is None and len(why) < 120 and "…" in why
    assert nz.normalize_email("x" * 10_000) == (None, "value too long (10000 characters, limit 320)")
    assert nz.normalize_email(True)[1] == "expected text, got a boolean (True)"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("acme.example", "acme.example"),
        ("  ACME.Example.  ", "acme.example"),
        ("https://www.Acme.example:8080/path?q#x", "acme.example"),
        ("http://user:pw@www2.acme.co.uk/", "acme.co.uk"),
        ("//cdn.acme.example/x", "acme.example"),  # an organisation's domain is the registrable one
        ("acme.example/about", "acme.example"),
        ("www.acme.example?ref=1", "acme.example"),
        ("bob@acme.example", "acme.example"),
        ("mailto:bob@acme.example", "acme.example"),
        ("www.com", "www.com"),  # www. is only dropped when a domain remains
        ("Bücher.Example", "xn--bcher-kva.example"),  # international names in their one ASCII form
        ("münchen。de", "xn--mnchen-3ya.de"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("sub.domain.acme.example", "acme.example"),
    ],
)
def test_domain_accepts(value, expected):
    assert nz.normalize_domain(value) == (expected, None)


@pytest.mark.parametrize(
    "value, expected",
    [
        # issue 14 item 12: hosts reduce to the registrable domain (public suffix + one label)
        ("https://www.shop.acme.co.uk/path", "acme.co.uk"),
        ("shop.acme.co.uk", "acme.co.uk"),
        ("blog.acme.com", "acme.com"),
        ("https://blog.acme.com/2024/01/post?utm=x", "acme.com"),
        ("a.b.c.acme.com.au", "acme.com.au"),
        ("www.acme.co.jp", "acme.co.jp"),
        ("bob@mail.acme.example", "acme.example"),
        ("acme.example", "acme.example"),
        ("deep.sub.acme.example", "acme.example"),  # unknown top-level labels are one-label suffixes
        # private suffixes count: pages hosted on one platform are different organisations
        ("acme.github.io", "acme.github.io"),
        ("https://www.acme.github.io/", "acme.github.io"),
        ("shop.acme.myshopify.com", "acme.myshopify.com"),
        # punycode and unicode forms of one domain: one identity (IDNA 2008 / UTS 46, ASCII)
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("MÜNCHEN.DE", "xn--mnchen-3ya.de"),
        ("https://www.münchen.de/rathaus", "xn--mnchen-3ya.de"),
        ("shop.münchen.de", "xn--mnchen-3ya.de"),
        ("Straße.de", "xn--strae-oqa.de"),  # not strasse.de: IDNA 2008 keeps the ß
        ("bücher.co.uk", "xn--bcher-kva.co.uk"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("sub.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
    ],
)
def test_domain_is_the_registrable_domain(value, expected):
    assert nz.normalize_domain(value) == (expected, None)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("https://www.shop.acme.co.uk/path", "shop.acme.co.uk"),
        ("blog.acme.com", "blog.acme.com"),
        ("//cdn.acme.example/x", "cdn.acme.example"),
        ("bob@mail.acme.example", "mail.acme.example"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("co.uk", "co.uk"),
    ],
)
def test_host_keeps_subdomains(value, expected):
    assert nz.normalize_host(value) == (expected, None)


@pytest.mark.parametrize(
    "value, word",
    [
        ("co.uk", "public suffix"),
        ("https://www.github.io/", "public suffix"),
        ("com.au", "public suffix"),
        ("https://www.linkedin.com/company/acme-corp", "LinkedIn page"),
        ("linkedin.com/in/jane-doe", "LinkedIn page"),
        ("https://www.linkedin.com/sales/company/1234567", "LinkedIn page"),  # a Sales Navigator scrape's companyUrl
        ("xn--zz.de", "international"),
        ("☃.example", "international"),
    ],
)
def test_domain_refuses_what_is_not_an_organisations_domain(value, word):
    out, why = nz.normalize_domain(value)
    assert out is None and word in why, why


def test_linkedin_itself_is_a_domain():
    assert nz.normalize_domain("https://www.linkedin.com/") == ("linkedin.com", None)
    assert nz.normalize_domain("about.linkedin.com") == ("linkedin.com", None)


def test_emails_keep_their_host():
    """An e-mail address is a person's identity: never reduced to the registrable domain."""
    assert nz.normalize_email("Jane@Mail.Shop.Acme.co.uk") == ("jane@mail.shop.acme.co.uk", None)


def test_public_suffix_list_is_bundled_and_never_fetched(monkeypatch):
    """The list ships inside publicsuffixlist; building it opens no socket and imports no updater."""
    import socket
    import sys

    def refuse(*args, **kwargs):
        raise AssertionError("the public suffix list tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    nz._suffixes.cache_clear()
    nz.registrable_domain.cache_clear()
    try:
        assert nz.registrable_domain("www.shop.acme.co.uk") == "acme.co.uk"
    finally:
        nz._suffixes.cache_clear()
        nz.registrable_domain.cache_clear()
    assert "publicsuffixlist.update" not in sys.modules


@pytest.mark.parametrize(
    "value, word",
    [("acme", "no dot"), ("Acme Inc", "spaces"), ("acme .example", "spaces"), ("http://10.0.0.1/", "not a host"),
     ("acme.example:abc", "not a host"), ("-acme.example", "not a host"), ("acme..example", "not a host"),
     ("http://", "no host"), ("acme.x", "not a host"), ("acme_corp.example", "not a host"), (42, "no dot"),
     ("a" * 64 + ".example", "not a host"), ("x" * 5000, "too long"), ({"d": 1}, "dict")],
)  # fmt: skip
def test_domain_rejects_with_reason(value, word):
    out, why = nz.normalize_domain(value)
    assert out is None and word in why, why


@pytest.mark.parametrize(
    "value, expected",
    [
        ("https://www.linkedin.com/in/jane-doe-123", "http://www.linkedin.com/in/jane-doe-123"),
        ("http://www.linkedin.com/in/jane-doe-123", "http://www.linkedin.com/in/jane-doe-123"),
        ("linkedin.com/in/Jane-Doe/", "http://www.linkedin.com/in/jane-doe"),
        ("https://uk.linkedin.com/in/Jane-Doe?trk=public#x", "http://www.linkedin.com/in/jane-doe"),
        ("HTTPS://WWW.LINKEDIN.COM/IN/JANE/details/experience/", "http://www.linkedin.com/in/jane"),
        ("www.linkedin.com/company/Apollo-IO/", "http://www.linkedin.com/company/apollo-io"),
        ("https://de.linkedin.com/company/acme?x=1", "http://www.linkedin.com/company/acme"),
        (" https://www.linkedin.com/in/j%C3%A9r%C3%B4me ", "http://www.linkedin.com/in/j%c3%a9r%c3%b4me"),
    ],
)
def test_linkedin_accepts(value, expected):
    assert nz.normalize_linkedin_url(value) == (expected, None)


@pytest.mark.parametrize(
    "value, word",
    [("https://example.com/in/jane", "not a linkedin"), ("https://www.linkedin.com/feed/", "/in/"),
     ("https://www.linkedin.com/in/", "/in/"), ("jane-doe", "not a linkedin"),
     ("https://notlinkedin.com/in/x", "not a linkedin"), (123, "not a linkedin")],
)  # fmt: skip
def test_linkedin_rejects(value, word):
    out, why = nz.normalize_linkedin_url(value)
    assert out is None and word in why


def test_hashed_email():
    md5, sha = "5F4DCC3B5AA765D61D8327DEB882CF99", "a" * 64
    assert nz.normalize_hashed_email(f" {md5} ") == (md5.lower(), None)
    assert nz.normalize_hashed_email(sha) == (sha, None)
    for bad in ("abc", "g" * 32, "a" * 40, "bob@acme.example", 12345):
        out, why = nz.normalize_hashed_email(bad)
        assert out is None and "MD5" in why and "SHA-256" in why
    assert "40 hex characters" in nz.normalize_hashed_email("a" * 40)[1]


def test_apollo_id():
    assert nz.normalize_apollo_id(" 5E66B6381E05B4008C8331B8 ") == ("5e66b6381e05b4008c8331b8", None)
    for bad in ("5e66b6381e05b4008c8331b", "5e66b6381e05b4008c8331bz", 12345, "x" * 1000):
        out, why = nz.normalize_apollo_id(bad)
        assert out is None and why
    assert "24 hex" in nz.normalize_apollo_id("abc")[1]


def test_name_keeps_case_and_accents():
    assert nz.normalize_name("  Zoë   O'Brien-Łukasz ") == ("Zoë O'Brien-Łukasz", None)
    assert nz.normalize_name("José") == ("José", None)  # decomposed input -> NFC
    assert nz.normalize_name("山田 太郎") == ("山田 太郎", None)
    assert nz.normalize_name("x" * 300)[1] == "value too long (300 characters, limit 256)"


def test_normalize_column():
    values, reasons = nz.normalize_column(["A@B.example", None, "nope", 7], nz.normalize_email)
    assert values == ["a@b.example", None, None, None]
    assert reasons[:2] == [None, None] and reasons[2].startswith("invalid email 'nope'") and "'7'" in reasons[3]


def test_no_normaliser_raises_on_odd_objects():
    odd = [object(), pd.Timestamp("2024-01-01"), 1 + 2j, (1, 2), {1, 2}, np.array([1, 2]), pd.Series([1]),
           bytearray(b"x")]
    for fn in (*NORMALIZERS, nz.clean_text):
        for value in odd:
            out, why = fn(value)
            assert out is None and why, (fn.__name__, value)
