#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when missing and when we are root.
# Elsewhere it prints the command to run; tests that need a package then skip with that reason
# (under CI=true they fail instead).
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)        # fetches the book's pinned browser assets
command -v g++ >/dev/null 2>&1 || need+=(g++)        # torch.compile's C++ code on a CPU (chapter 6)
# a PostgreSQL gradebook (tests/test_grading_postgres.py starts its own server; Debian keeps
# initdb in /usr/lib/postgresql/<version>/bin)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "missing Debian packages: ${need[*]} -- install them with: sudo apt-get install ${need[*]}" >&2
fi
