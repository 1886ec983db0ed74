#!/bin/sh
# Removes capd installed from this bundle (what SSM Distributor runs on uninstall). Config,
# recordings and the user stay; `install.sh --uninstall --purge` removes them too.
set -eu
exec sh "$(cd "$(dirname "$0")" && pwd)/install.sh" --uninstall "$@"
