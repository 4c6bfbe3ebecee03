#!/usr/bin/env bash
# Vendors the browser assets the web book would otherwise load from CDNs, so a built page requests
# nothing from any outside host:
#   require.js                       (RequireJS, needed by the ipywidgets embed manager)
#   @jupyter-widgets/html-manager    (embed-amd.js: renders the widget state stored in notebooks;
#                                     bundles @jupyter-widgets/base, controls and output + icon fonts)
#   MathJax 3                        (renders $math$ in chapters)
# Versions are pinned in package.json and package-lock.json (the lock file carries integrity
# hashes but no registry host: see .npmrc). `npm ci` installs them into the git-ignored
# node_modules/, then the files the pages load are copied into the git-ignored
# book/_static/vendor/, which Sphinx copies to _build/html/_static/vendor/.
# _config.yml points myst-nb (nb_ipywidgets_js) and Sphinx (mathjax_path) at those copies.
#
# Run by `make web-assets` (a prerequisite of `make book`). A second run does nothing unless
# package.json or package-lock.json changed.
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

if [ -f "$dest_stamp" ] && [ "$dest_stamp" -nt "$npm_stamp" ] && [ "$dest_stamp" -nt "$0" ]; then
    exit 0  # already vendored from this install
fi

nm=node_modules
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$dest.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# RequireJS (MIT)
mkdir -p "$tmp/requirejs"
cp "$nm/requirejs/require.js" "$nm/requirejs/package.json" "$tmp/requirejs/"  # licence in its header

# ipywidgets embed manager (BSD-3-Clause) with the icon fonts its CSS loads relative to itself
w=$nm/@jupyter-widgets/html-manager
mkdir -p "$tmp/jupyter-widgets"
cp "$w/dist/embed-amd.js" "$w/dist/embed.js.LICENSE.txt" "$w/package.json" "$tmp/jupyter-widgets/"
cp "$w"/dist/*.woff2 "$w"/dist/*.woff "$w"/dist/*.ttf "$w"/dist/*.eot "$w"/dist/*.svg "$tmp/jupyter-widgets/"
cp "$nm/@fortawesome/fontawesome-free/LICENSE.txt" "$tmp/jupyter-widgets/fontawesome-LICENSE.txt"

# MathJax 3 (Apache-2.0): the combined TeX+MathML/CHTML component plus what it loads on demand
# (TeX extensions via autoload, CHTML fonts, the menu, accessibility and speech components)
m=$nm/mathjax/es5
mkdir -p "$tmp/mathjax/output"
cp "$m/tex-mml-chtml.js" "$tmp/mathjax/"
cp -r "$m/input" "$m/ui" "$m/a11y" "$m/sre" "$m/adaptors" "$tmp/mathjax/"
cp -r "$m/output/chtml" "$tmp/mathjax/output/"
cp "$nm/mathjax/LICENSE" "$nm/mathjax/package.json" "$tmp/mathjax/"

touch "$tmp/.bufferbook-vendored"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "vendored web assets into $dest ($(du -sh "$dest" | cut -f1))"
