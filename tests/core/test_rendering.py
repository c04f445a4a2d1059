"""Safe markdown → HTML: what ADO shows for a description or a comment the bundle writes."""

from __future__ import annotations

import pytest

from shared.core.rendering import markdown_html, safe_url


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Seen **42** times", "<p>Seen <strong>42</strong> times</p>"),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
        ("1. first\n2. second", "<ol>\n<li>first</li>\n<li>second</li>\n</ol>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        (
            "```python\nif a < b:\n    pass\n```",
            '<pre><code class="language-python">if a &lt; b:\n    pass\n</code></pre>',
        ),
        ("~~~\nplain <b>\n~~~", "<pre><code>plain &lt;b&gt;\n</code></pre>"),
        ("```\"><script>\nx\n```", '<p><code>"&gt;&lt;script&gt;\nx</code></p>'),
        ("inline `<b>` code", "<p>inline <code>&lt;b&gt;</code> code</p>"),
        ("[docs](https://example.com/a?b=1&c=2)", '<p><a href="https://example.com/a?b=1&amp;c=2">docs</a></p>'),
        ("<https://example.com>", '<p><a href="https://example.com">https://example.com</a></p>'),
        ("[mail](mailto:ann@example.com)", '<p><a href="mailto:ann@example.com">mail</a></p>'),
        ("[up](../issues/1)", '<p><a href="../issues/1">up</a></p>'),
        ("![diagram](https://example.com/d.png)", '<p><img alt="diagram" src="https://example.com/d.png" /></p>'),
        # raw HTML is shown as text, never passed through
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        ("**bold** <b>x</b> & y", "<p><strong>bold</strong> &lt;b&gt;x&lt;/b&gt; &amp; y</p>"),
        ('<img src=x onerror="alert(1)">', "<p>&lt;img src=x onerror=\"alert(1)\"&gt;</p>"),
        # unsafe targets are emptied, however they are spelled
        ("[x](javascript:alert(1))", '<p><a href="">x</a></p>'),
        ("[x](JavaScript:alert(1))", '<p><a href="">x</a></p>'),
        ("[x]( javascript:alert(1))", '<p><a href="">x</a></p>'),
        ("[x](javascript&#58;alert(1))", '<p><a href="">x</a></p>'),
        ("[x](jav&#x61;script:alert(1))", '<p><a href="">x</a></p>'),
        ("[x](&#106;avascript:alert(1))", '<p><a href="">x</a></p>'),
        ("[x](javascript&colon;alert(1))", '<p><a href="">x</a></p>'),
        ("[x](vbscript:msgbox(1))", '<p><a href="">x</a></p>'),
        ("[x][1]\n\n[1]: javascript:alert(1)", '<p><a href="">x</a></p>'),
        ("![i](data:image/png;base64,AAAA)", '<p><img alt="i" src="" /></p>'),
        ("![i](javascript:alert(1))", '<p><img alt="i" src="" /></p>'),
    ],
)
def test_markdown_html(source: str, expected: str) -> None:
    assert markdown_html(source) == expected


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("https://example.com/x", True),
        ("http://example.com", True),
        ("mailto:ann@example.com", True),
        ("/relative/path", True),
        ("#anchor", True),
        ("", True),
        ("javascript:alert(1)", False),
        ("  JAVASCRIPT:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("javascript&#58;alert(1)", False),
        ("&#x6A;avascript:alert(1)", False),
        ("data:text/html,<script>", False),
        ("vbscript:x", False),
        ("file:///etc/passwd", False),
        ("http://[::1", False),
    ],
)
def test_safe_url(target: str, safe: bool) -> None:
    assert safe_url(target) is safe
