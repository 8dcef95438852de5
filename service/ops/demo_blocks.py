"""The demo workflow's blocks: a small rule-based invoice reader over text, and a classifier.

They run inside the service as `function` blocks (`scripts/run` adds this
module to `FUNCTION_MODULES`), so the demo needs no outside service. Each is
called with the test's handle inputs, `{"document": TEXT}`, and returns its
output handles, `{"output-json-0": {...}}`.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["classify_document", "read_invoice"]

OUTPUT = "output-json-0"

_NUMBER = r"(\d{1,3}(?:,\d{3})*(?:\.\d{2})?|\d+(?:\.\d{2})?)"
_INVOICE_NUMBER = re.compile(r"invoice\s*(?:no\.?|number|#)\s*:?\s*([A-Z0-9][A-Z0-9-]*)", re.I)
_DATE = re.compile(r"^\s*(?:invoice\s+)?date\s*:\s*(\d{4}-\d{2}-\d{2})", re.I | re.M)
_TOTAL = re.compile(
    rf"^\s*total(?:\s+due)?\s*:?\s*(EUR|USD|GBP|€|\$|£)?\s*{_NUMBER}\s*(EUR|USD|GBP)?\s*$",
    re.I | re.M,
)
# `3 x Paper, A4 @ 4.50`: quantity, description, unit price.
_ITEM = re.compile(rf"^\s*(\d+)\s*x\s+(.+?)\s*@\s*{_NUMBER}\s*$", re.I | re.M)
_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP"}


def _text(inputs: dict[str, Any]) -> str:
    document = inputs.get("document")
    if isinstance(document, dict):
        document = document.get("text")
    if not isinstance(document, str):
        msg = 'the "document" handle must hold the invoice text (a string)'
        raise TypeError(msg)
    return document


def _amount(text: str) -> float:
    return float(text.replace(",", ""))


def read_invoice(inputs: dict[str, Any]) -> dict[str, Any]:
    """Read the vendor, number, date, line items, total and currency of an invoice's text.

    The vendor is the first line of the text. A document without text (a
    scanned image) cannot be read by rules: that raises, and the test is
    `blocked` with the reason.
    """
    text = _text(inputs)
    if not text.strip():
        msg = (
            "the document has no text layer (a scanned image?): this rule-based reader "
            "needs text; an OCR block would have to read it first"
        )
        raise ValueError(msg)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    number = _INVOICE_NUMBER.search(text)
    date = _DATE.search(text)
    total = _TOTAL.search(text)
    currency = None
    if total is not None:
        symbol = total.group(1) or total.group(3)
        currency = _SYMBOLS.get(symbol, symbol.upper()) if symbol else None
    items = [
        {
            "quantity": int(match.group(1)),
            "description": match.group(2),
            "unit_price": _amount(match.group(3)),
            "amount": round(int(match.group(1)) * _amount(match.group(3)), 2),
        }
        for match in _ITEM.finditer(text)
    ]
    return {
        OUTPUT: {
            "vendor": {"name": lines[0]},
            "invoice_number": number.group(1) if number else None,
            "date": date.group(1) if date else None,
            "items": items,
            "total": _amount(total.group(2)) if total else None,
            "currency": currency,
        }
    }


_KINDS = (
    ("invoice", ("invoice", "total due", "bill to", "payment terms")),
    ("receipt", ("receipt", "paid", "thank you for your purchase", "change")),
    ("purchase_order", ("purchase order", "p.o. number", "ship to")),
)


def classify_document(inputs: dict[str, Any]) -> dict[str, Any]:
    """The kind of a document's text: the kind whose keywords occur most (ties: first listed)."""
    text = _text(inputs).lower()
    scores = {kind: sum(text.count(word) for word in words) for kind, words in _KINDS}
    best = max(scores, key=lambda kind: scores[kind])
    label = best if scores[best] > 0 else "other"
    return {OUTPUT: {"label": label, "scores": scores}}
