"""Outputs read from a recording, made inert before they are shown again.

>>> data, metadata = inert_bundle({"text/html": "<b onclick=x>hi</b>"}, {})
>>> data["text/html"]
'<b>hi</b>'

Recordings are files people download, and JupyterLab trusts what a kernel displays: a
replayed output may be plain text (colours kept, other terminal escapes removed), a PNG or
JPEG image (checked to be one), or HTML and Markdown cleaned by `nh3` (tables and text
formatting stay; scripts, styles, event handlers, iframes, SVG, forms and every external
reference go). Anything else (JavaScript, widget views, SVG, unknown types) is dropped: a
display bundle keeps its static fallbacks.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import nh3

PLAIN, HTML, MARKDOWN, PNG, JPEG = ("text/plain", "text/html", "text/markdown", "image/png",
                                    "image/jpeg")
_MAGIC = {PNG: b"\x89PNG\r\n\x1a\n", JPEG: b"\xff\xd8\xff"}
_TAGS = {"table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "b", "i", "em",
         "strong", "code", "pre", "p", "br", "span", "div", "ul", "ol", "li", "small", "sub",
         "sup", "h1", "h2", "h3", "h4", "h5", "h6", "img", "details", "summary"}
_GONE = {"script", "style", "iframe", "frame", "frameset", "object", "embed", "svg", "math",
         "form", "template", "noscript", "textarea", "select", "button", "audio", "video",
         "canvas", "link", "meta", "base"}  # removed with their content
_ATTRIBUTES = {"*": {"style"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"},
               "table": {"border"}, "img": {"src", "alt", "width", "height"}}
_CLASSES = {"table": {"dataframe"}}  # pandas' tables, as JupyterLab styles them
# text formatting only: nothing that positions, sizes or loads (no url(), no overlays)
_STYLES = {"color", "background-color", "text-align", "vertical-align", "font-weight",
           "font-style", "font-family", "white-space"}
_IMAGE_SIZE = {"width", "height"}
_DATA_URI = re.compile(r"data:(image/png|image/jpeg);base64,([A-Za-z0-9+/=\s]*)\Z")
# terminal escapes: OSC (title, clipboard, links), CSI, any other ESC; only colours (SGR) stay
_ESCAPE = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b.?", re.S)
_SGR = re.compile(r"\x1b\[[0-9;]*m\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINKY = re.compile(r"\]\s*[(:]|://|www\.|javascript:|data:|<", re.IGNORECASE)


def plain_text(text: str) -> str:
    """Text with no terminal escapes but colours, and no other control characters."""
    kept = _ESCAPE.sub(lambda m: m.group() if _SGR.match(m.group()) else "", text)
    return "\x1b".join(_CONTROL.sub("", part) for part in kept.split("\x1b"))


def image_bytes(mime: str, b64: Any) -> bytes | None:
    """The image the base64 text `b64` holds, if it decodes and is a `mime` image (else None)."""
    if mime not in _MAGIC:
        return None
    if isinstance(b64, (bytes, bytearray)) and bytes(b64).startswith(_MAGIC[mime]):
        return bytes(b64)  # IPython may hand raw bytes before they are encoded
    if not isinstance(b64, (str, bytes, bytearray)):
        return None
    try:
        raw = base64.b64decode(b"".join(_ascii(b64).split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if raw.startswith(_MAGIC[mime]) else None


def _ascii(text: str | bytes | bytearray) -> bytes:
    return text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)


def _attribute(tag: str, attr: str, value: str) -> str | None:
    """nh3's attribute filter: an <img> shows only an embedded PNG or JPEG."""
    if tag == "img" and attr == "src":
        m = _DATA_URI.match(value.strip())
        if m is None or image_bytes(m.group(1), m.group(2)) is None:
            return None
    return value


def clean_html(text: str) -> str:
    """HTML with only tables, text formatting and embedded PNG/JPEG images left."""
    return nh3.clean(text, tags=_TAGS, clean_content_tags=_GONE, attributes=_ATTRIBUTES,
                     allowed_classes=_CLASSES, attribute_filter=_attribute,
                     url_schemes={"data"}, url_relative="deny", filter_style_properties=_STYLES,
                     link_rel=None, strip_comments=True)


def clean_markdown(text: str) -> str | None:
    """Markdown with no HTML in it, or None if it holds links, images or addresses
    (Markdown's own syntax for them passes any HTML sanitizer)."""
    cleaned = nh3.clean(text, tags=set(), clean_content_tags=_GONE)
    return None if _LINKY.search(cleaned) else cleaned


def inert_bundle(data: Any, metadata: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The part of a display bundle that can be shown safely, and its image metadata."""
    data = data if isinstance(data, dict) else {}
    kept: dict[str, Any] = {}
    if isinstance(data.get(PLAIN), str):
        kept[PLAIN] = plain_text(data[PLAIN])
    if isinstance(data.get(HTML), str):
        kept[HTML] = clean_html(data[HTML])
    if isinstance(data.get(MARKDOWN), str):
        md = clean_markdown(data[MARKDOWN])
        if md is not None:
            kept[MARKDOWN] = md
        elif PLAIN not in kept:
            kept[PLAIN] = plain_text(data[MARKDOWN])  # shown as text
    for mime in (PNG, JPEG):
        raw = image_bytes(mime, data.get(mime))
        if raw is not None:
            kept[mime] = base64.b64encode(raw).decode("ascii")
    return kept, _image_metadata(kept, metadata)


def _image_metadata(kept: dict[str, Any], metadata: Any) -> dict[str, Any]:
    """Only the width and height (numbers) of kept images."""
    out: dict[str, Any] = {}
    for mime in (PNG, JPEG):
        given = metadata.get(mime) if isinstance(metadata, dict) else None
        if mime in kept and isinstance(given, dict):
            size = {k: v for k, v in given.items() if k in _IMAGE_SIZE
                    and isinstance(v, (int, float)) and not isinstance(v, bool)}
            if size:
                out[mime] = size
    return out


def inert_output(out: Any) -> dict[str, Any] | None:
    """A recorded output (nbformat-like dict) made inert; None if nothing of it may be shown."""
    if not isinstance(out, dict):
        return None
    if out.get("output_type") == "stream":
        name, text = out.get("name"), out.get("text")
        if name in ("stdout", "stderr") and isinstance(text, str):
            return {"output_type": "stream", "name": name, "text": plain_text(text)}
        return None
    data, metadata = inert_bundle(out.get("data"), out.get("metadata"))
    if not data:
        return None
    return {"output_type": "display_data", "data": data, "metadata": metadata}
