# The documentation site (mkdocs build --strict runs in CI: scripts/test.d/docs.sh).
EXTRAS+=(docs)
