#!/usr/bin/env bash
# Everything tests/test_web_demo.py needs, from scratch on a clean Debian (bookworm) machine:
# Debian's chromium (Playwright's own browser download does not work offline), node + npm, `npm ci`, build.
# Idempotent; run as root or with sudo available. Usage: .ci/web_demo_setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "web_demo_setup: need root (or sudo) to run: $*" >&2; exit 2; fi
}

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "web_demo_setup: node $(node --version) is too old; onnxruntime-web and playwright-core need node >= 18" >&2
  exit 2
fi

# The browser is Debian's; never let Playwright try to download one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd web_demo && npm ci --no-audit --no-fund && npm run build)
/usr/bin/chromium --version
echo "web_demo_setup: ready (run: python -m pytest tests/test_web_demo.py)"
