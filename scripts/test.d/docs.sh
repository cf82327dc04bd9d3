# Build the documentation site strictly: a broken link or a missing page fails CI.
docs_build() {
  NO_MKDOCS_2_WARNING=1 "$ROOT/.venv/bin/mkdocs" build --strict --site-dir "$(mktemp -d)"
}
RUNS+=(docs_build)
