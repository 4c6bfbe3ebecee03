#!/usr/bin/env bash
# Vendors the browser assets the web book would otherwise load from CDNs, so a built page requests
# nothing from any outside host: widgets/widget-manager.js + .css render the widget state stored
# in notebooks (on pages with widgets only). They are built here with esbuild from
# scripts/web/widget-manager.js and the pinned @jupyter-widgets/base + controls (see that file
# for why not @jupyter-widgets/html-manager's 3.6 MB embed-amd.js).
# Versions are pinned in package.json and package-lock.json (the lock file carries integrity
# hashes but no registry host: see .npmrc). `npm ci` installs them into the git-ignored
# node_modules/, then the files the pages load are built or copied into the git-ignored
# book/_static/vendor/, which Sphinx copies to _build/html/_static/vendor/.
# _config.yml points myst-nb (nb_ipywidgets_js) at them.
# Two packages stay in node_modules/ and never reach a reader: MathJax 3, which typesets the
# book's math into SVG when the book is built (book/_ext/render-math.js), and axe-core, the
# accessibility rules tests/test_browser.py runs on every page.
#
# Run by `make web-assets` (a prerequisite of `make book`). A second run does nothing unless
# package.json, package-lock.json, this script or scripts/web/ changed.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=book/_static/vendor
npm_stamp=node_modules/.bufferbook-installed
dest_stamp=$dest/.bufferbook-vendored

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian packages: nodejs npm"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    else
        echo "npm is missing: the web book vendors its browser assets with npm." >&2
        echo "Install it with: sudo apt-get install nodejs npm   (then rerun make book)" >&2
        exit 1
    fi
fi

if [ ! -f "$npm_stamp" ] || [ package.json -nt "$npm_stamp" ] || [ package-lock.json -nt "$npm_stamp" ]; then
    echo "installing pinned web assets with npm ci (package-lock.json)"
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    touch "$npm_stamp"
fi

newest_source=$(ls -t "$0" scripts/web/* "$npm_stamp" | head -n 1)
if [ -f "$dest_stamp" ] && [ "$dest_stamp" -nt "$newest_source" ]; then
    exit 0  # already vendored from these sources
fi

nm=node_modules
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$dest.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Widget manager, minified: one script and one stylesheet (ipywidgets: BSD-3-Clause; the notices
# of the bundled libraries that carry one, e.g. jQuery: widget-manager.js.LEGAL.txt).
mkdir -p "$tmp/widgets"
"$nm/.bin/esbuild" scripts/web/widget-manager.js --bundle --minify --format=iife \
    --target=es2020 --legal-comments=linked --log-level=warning \
    --alias:sanitize-html=./scripts/web/sanitize-html-lite.js \
    --outfile="$tmp/widgets/widget-manager.js"
"$nm/.bin/esbuild" scripts/web/widgets.css --bundle --minify --log-level=warning \
    --outfile="$tmp/widgets/widget-manager.css"
for pkg in base base-manager controls; do  # name, version and licence of each
    cp "$nm/@jupyter-widgets/$pkg/package.json" "$tmp/widgets/jupyter-widgets-$pkg.package.json"
done

touch "$tmp/.bufferbook-vendored"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "vendored web assets into $dest ($(du -sh "$dest" | cut -f1))"
