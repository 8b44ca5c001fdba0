#!/usr/bin/env bash
# GraphiQL's browser bundles, as the server embeds them (vendor/graphiql): fetches the
# pinned packages again from the npm registry with `npm pack`, takes the unmodified
# production files out of them, and checks them against vendor/graphiql/SHA256SUMS.
#
#   scripts/vendor-graphiql.sh           verify the vendored files (the default)
#   scripts/vendor-graphiql.sh --update  replace them, and their sums, with the packages'
#
# To move to other versions, change PACKAGES below and run with --update.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=vendor/graphiql
# package@version  file in the package  name in vendor/graphiql
PACKAGES=(
  "graphiql@4.1.2 package/graphiql.min.js graphiql.min.js"
  "graphiql@4.1.2 package/graphiql.min.css graphiql.min.css"
  "graphiql@4.1.2 package/LICENSE LICENSE.graphiql"
  "react@18.3.1 package/umd/react.production.min.js react.production.min.js"
  "react@18.3.1 package/LICENSE LICENSE.react"
  "react-dom@18.3.1 package/umd/react-dom.production.min.js react-dom.production.min.js"
  "react-dom@18.3.1 package/LICENSE LICENSE.react-dom"
)

update=false
case "${1:-}" in
  --update) update=true ;;
  "") ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out"
for entry in "${PACKAGES[@]}"; do
  read -r package path name <<<"$entry"
  unpacked="$work/${package//\//_}"
  if [ ! -d "$unpacked" ]; then
    mkdir -p "$unpacked"
    tarball=$(cd "$work" && npm pack --silent "$package" 2>/dev/null | tail -1)
    tar -xzf "$work/$tarball" -C "$unpacked"
  fi
  cp "$unpacked/$path" "$work/out/$name"
done

if $update; then
  mkdir -p "$dest"
  cp "$work/out/"* "$dest/"
  (cd "$dest" && sha256sum $(cd "$work/out" && ls) >SHA256SUMS)
  echo "vendor-graphiql: updated $dest"
else
  (cd "$work/out" && sha256sum --quiet -c "$OLDPWD/$dest/SHA256SUMS")
  (cd "$dest" && sha256sum --quiet -c SHA256SUMS)
  echo "vendor-graphiql: $dest matches the npm registry's packages"
fi
