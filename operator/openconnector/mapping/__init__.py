"""Mappings: OpenConnector's payload transformation (dot-path copy, literals, sandboxed templates, casts)."""

from openconnector.mapping.casts import CAST_NAMES
from openconnector.mapping.engine import (
    ROOT_KEY,
    CompiledMapping,
    MappingError,
    compile_mapping,
    parse_path,
    validate_mapping,
)
from openconnector.mapping.templates import (
    MAX_LOOP_ITERATIONS,
    MAX_RENDERED_LENGTH,
    MAX_STRING_LENGTH,
)

__all__ = [
    "CAST_NAMES",
    "MAX_LOOP_ITERATIONS",
    "MAX_RENDERED_LENGTH",
    "MAX_STRING_LENGTH",
    "ROOT_KEY",
    "CompiledMapping",
    "MappingError",
    "compile_mapping",
    "parse_path",
    "validate_mapping",
]
