#!/usr/bin/env bash
# Render every diagram (*.tex except style.tex) to PDF and PNG next to its source.
# Installs what it needs the first time (Debian: pdflatex with TikZ, and pdftoppm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v pdflatex >/dev/null || ! command -v pdftoppm >/dev/null || ! kpsewhich standalone.cls >/dev/null; then
  echo "[diagrams] installing TeX Live (TikZ, standalone) and poppler-utils"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    texlive-latex-base texlive-pictures texlive-latex-extra poppler-utils >/dev/null
fi
build=$(mktemp -d)
for src in *.tex; do
  [ "$src" = style.tex ] && continue
  name="${src%.tex}"
  pdflatex -interaction=nonstopmode -halt-on-error -output-directory "$build" "$src" >"$build/$name.out" \
    || { tail -30 "$build/$name.out"; exit 1; }
  cp "$build/$name.pdf" "$name.pdf"
  pdftoppm -png -r 160 -singlefile "$name.pdf" "$name"
  echo "[diagrams] $name.pdf, $name.png"
done
rm -rf "$build"
