#!/usr/bin/env bash
# Runs shellcheck on every shell script of deploy/ and tests/deploy/, and on the scripts embedded in
# the SSM documents (extracted by check_documents.py). The POSIX sh ones are checked as sh: they
# run under dash on Ubuntu.
set -euo pipefail
deploy=$1 tests=$2
if ! command -v shellcheck >/dev/null; then
  echo "SKIP: shellcheck not found (Debian: shellcheck)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
shellcheck -s sh "$deploy/bundle/install.sh" "$deploy/bundle/uninstall.sh" \
  "$deploy/bundle/launcher.sh.in" "$deploy/debian/postinst" "$deploy/debian/prerm" \
  "$deploy/debian/postrm" || status=1
shellcheck -s bash "$deploy/bundle/make-bundle.sh" "$tests"/*.sh || status=1
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "SKIP: the SSM documents' scripts (python3 has no yaml module; Debian: python3-yaml)"
  if [ "$status" -eq 0 ]; then exit 77; fi
  exit "$status"
fi
extracted=yes
python3 "$tests/check_documents.py" "$deploy" --extract "$work/ssm" >/dev/null || extracted=no
if [ "$extracted" = yes ] && compgen -G "$work/ssm/*.sh" >/dev/null; then
  for script in "$work"/ssm/*.sh; do
    echo "shellcheck (sh) SSM step $(basename "$script" .sh)"
  done
  shellcheck -s sh "$work"/ssm/*.sh || status=1
else
  echo "FAIL: could not extract the SSM scripts (see deploy.documents)"
  status=1
fi
if [ "$status" -eq 0 ]; then echo "PASS: shellcheck clean"; fi
exit "$status"
