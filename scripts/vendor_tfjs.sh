#!/usr/bin/env bash
# Vendor TensorFlow.js for the static web demo (supervised_reptile/tools/web/vendor/).
#
#   bash scripts/vendor_tfjs.sh
#
# Fetches the pinned @tensorflow/tfjs release with `npm pack` (the npm registry only),
# checks the tarball's sha256, and copies its minified ES2017 browser bundle
# dist/tf.es2017.min.js, byte for byte, with the Apache-2.0 license it is released under.
# ES2017, not dist/tf.min.js (ES5): the ES5 bundle's polyfills evaluate strings as code
# (Function("...")), which a Content-Security-Policy without 'unsafe-eval' (the demo
# server's) refuses, and it is 360 KB larger. Every browser since 2017 runs ES2017. The result is
# committed, so a fresh clone exports pages without any network; rerun this script only
# to change the pinned version (then update VERSION and SHA256 below).
set -euo pipefail

VERSION=4.22.0
SHA256=56505c191e24116787477b3bb5bb1cc0cf1c2bdce8112b9c402a8a2d31cf2f00  # tensorflow-tfjs-4.22.0.tgz
LICENSE_TEXT=/usr/share/common-licenses/Apache-2.0  # the package ships none; Debian's copy of the text

dest="$(cd "$(dirname "$0")/.." && pwd)/supervised_reptile/tools/web/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "@tensorflow/tfjs@$VERSION" >/dev/null)
tarball="$work/tensorflow-tfjs-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum --check --quiet -
tar -xzf "$tarball" -C "$work" package/dist/tf.es2017.min.js package/package.json
grep -q '"license": "Apache-2.0"' "$work/package/package.json"

mkdir -p "$dest"
rm -f "$dest"/tf*.js
cp "$work/package/dist/tf.es2017.min.js" "$dest/tf.es2017.min.js"
{
  echo "TensorFlow.js $VERSION (npm package @tensorflow/tfjs, file dist/tf.es2017.min.js)"
  echo "Copyright Google LLC. Licensed under the Apache License, Version 2.0:"
  echo
  cat "$LICENSE_TEXT"
} >"$dest/LICENSE"
echo "vendored @tensorflow/tfjs@$VERSION into $dest (tf.es2017.min.js sha256 $(sha256sum "$dest/tf.es2017.min.js" | cut -d' ' -f1))"
