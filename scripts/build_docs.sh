#!/usr/bin/env bash
# Build the documentation site into site/ with warnings as errors.
#   bash scripts/build_docs.sh                 # -> site/index.html
#   bash scripts/build_docs.sh --site-dir DIR  # any other `mkdocs build` option
# Needs the test extra (pip install -e ".[test]"): mkdocs-material, mkdocstrings[python].
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_MKDOCS_2_WARNING=1   # mkdocs-material's notice about MkDocs 2.0 (not a build warning)
exec python -m mkdocs build --strict "$@"
