"""Validate a JUnit XML report against the Jenkins junit-10 schema (junit-10.xsd, next to it)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import xmlschema

SCHEMA_PATH = Path(__file__).with_name("junit-10.xsd")


@cache
def schema() -> xmlschema.XMLSchema:
    """The parsed schema (once per session)."""
    return xmlschema.XMLSchema(str(SCHEMA_PATH))


def validated(path: Path) -> ET.Element:
    """The report's root element, after `xmlschema` says it is valid (else it raises)."""
    schema().validate(str(path))
    return ET.parse(path).getroot()  # noqa: S314  (our own report)
