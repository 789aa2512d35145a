"""Kubernetes resource quantities (`512Mi`, `2G`, `1.5Gi`, `1e9`) as exact numbers.

Small and exact (Decimal), so size limits can be compared with the cluster maximum
and re-serialized quantities from the apiserver (`1024Mi` comes back as `1Gi`)
compare equal. Importing the kubernetes client for this would cost a second at startup.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

_BINARY: Final = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL: Final = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY: Final = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity; ValueError with a readable reason if it is not one."""
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 512Mi, 2Gi, 1G, 500M)")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from exc
    if match["sign"] == "-":
        number = -number
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))


def same_quantity(a: str, b: str) -> bool:
    """True when both strings are quantities of the same value (`1Gi` == `1024Mi`)."""
    try:
        return parse_quantity(a) == parse_quantity(b)
    except ValueError:
        return False
