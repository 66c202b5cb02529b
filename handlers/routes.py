"""The API's paths, in a module with no imports: the command line names them without loading the web stack."""

from __future__ import annotations

GENERATE_PATH = "/v1/generate"
