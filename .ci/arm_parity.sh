#!/usr/bin/env bash
# aarch64 parity (issue 21): build an emulated arm64 Python with the runtimes phones use (onnxruntime CPU/NEON,
# LiteRT/XNNPACK), then run the shipped ONNX / TFLite files on it and compare with x86 and torch.
#
#   bash .ci/arm_parity.sh --ci          # CI subset: one fp32 + one int8 file per target, one photo
#   bash .ci/arm_parity.sh --all         # every shipped ONNX / TFLite file, three photos, two emulated CPUs
#   bash .ci/arm_parity.sh --setup-only  # build the cache only
#   (any other option goes to `python -m toolkit.bench.arm`, e.g. --update-manifest)
#
# Everything comes from registries, pinned below: Debian arm64 packages (interpreter + libc, unpacked with dpkg -x
# into a sysroot, no arm64 dpkg database or foreign architecture on this machine), qemu-user-static from this
# machine's apt, PyPI aarch64 wheels (pip --platform, installed with --target). Built once into .cache/arm/
# (git-ignored); a rerun with the same pins reuses it.
#
# Exit 3: this machine cannot emulate aarch64 (no qemu and no way to install it, or not a Debian host): callers
# may skip. Any other non-zero exit is a real failure (a registry lacks a pinned piece, or a file fails parity).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

CACHE=${ARM_CACHE:-.cache/arm}
PY=${PYTHON:-python}

# --- pins (change here; the cache is rebuilt when this block changes) ---
DEBIAN_MIRROR=http://deb.debian.org
DEBIAN_SUITE=bookworm
QEMU_PIN=1:7.2+dfsg-7+deb12u18+b3
PY_VERSION=3.11
DEBS=(  # python3.11-minimal + libpython3.11-stdlib and the libraries numpy / onnxruntime / LiteRT load
  libc6=2.36-9+deb12u14 libgcc-s1=12.2.0-14+deb12u1 libstdc++6=12.2.0-14+deb12u1 zlib1g=1:1.2.13.dfsg-1+deb12u1
  libexpat1=2.5.0-1+deb12u5 libffi8=3.4.4-1 libbz2-1.0=1.0.8-5+b1 liblzma5=5.4.1-1+deb12u2
  libssl3=3.0.22-1~deb12u2 libpython3.11-minimal=3.11.2-6+deb12u9 python3.11-minimal=3.11.2-6+deb12u9
  libpython3.11-stdlib=3.11.2-6+deb12u9
)
# site name = wheels installed into .cache/arm/site/<name>; "base" is on every run's path
WHEEL_SITES=(
  "base numpy==2.4.6"
  "onnxruntime onnxruntime==1.32.0"
  "litert ai-edge-litert==2.3.0"      # the x86 pin (pyproject) has an aarch64 wheel too
  "litert-1.4.0 ai-edge-litert==1.4.0"  # the newest manylinux_2_17 one: what an older runtime on a phone does
)
# --- end pins ---

say() { echo "arm_parity: $*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

MODE_ARGS=()
SETUP_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --setup-only) SETUP_ONLY=1 ;;
    *) MODE_ARGS+=("$arg") ;;
  esac
done

STAMP=$(printf '%s\n' "$DEBIAN_MIRROR" "$DEBIAN_SUITE" "$QEMU_PIN" "$PY_VERSION" "${DEBS[@]}" "${WHEEL_SITES[@]}" \
        | sha256sum | cut -c1-16)

find_qemu() { command -v qemu-aarch64-static || command -v qemu-aarch64 || true; }

ensure_qemu() {
  QEMU=$(find_qemu)
  [ -n "$QEMU" ] && return 0
  local apt=()
  if [ "$(id -u)" = 0 ]; then apt=(apt-get)
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then apt=(sudo apt-get)
  else die "SKIP: qemu-aarch64 is not installed and apt needs root (no root, no passwordless sudo); install qemu-user-static" 3
  fi
  command -v apt-get >/dev/null || die "SKIP: qemu-aarch64 is not installed and there is no apt-get here" 3
  say "installing qemu-user-static=$QEMU_PIN"
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends "qemu-user-static=$QEMU_PIN" >/dev/null; then
    "${apt[@]}" update -q >/dev/null || true
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends "qemu-user-static=$QEMU_PIN" >/dev/null \
      || die "the Debian registry does not serve qemu-user-static=$QEMU_PIN for this machine; update QEMU_PIN in .ci/arm_parity.sh"
  fi
  QEMU=$(find_qemu)
  [ -n "$QEMU" ] || die "qemu-user-static installed but no qemu-aarch64 binary found"
}

build_sysroot() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || die "SKIP: $keyring is absent (not a Debian host); cannot verify Debian arm64 packages" 3
  local apt_dir="$PWD/$CACHE/apt"
  rm -rf "$apt_dir" "$CACHE/sysroot" "$CACHE/debs"
  mkdir -p "$apt_dir"/{etc,state/lists/partial,cache/archives/partial} "$CACHE/debs" "$CACHE/sysroot"
  : > "$apt_dir/state/status"
  for suite in "$DEBIAN_SUITE" "$DEBIAN_SUITE-updates"; do
    echo "deb [arch=arm64 signed-by=$keyring] $DEBIAN_MIRROR/debian $suite main"
  done > "$apt_dir/etc/sources.list"
  echo "deb [arch=arm64 signed-by=$keyring] $DEBIAN_MIRROR/debian-security $DEBIAN_SUITE-security main" \
    >> "$apt_dir/etc/sources.list"
  # A private apt: its own lists/state/cache, arm64 only; the machine's apt configuration is never touched.
  local opts=(-o "Dir::Etc=$apt_dir/etc" -o "Dir::Etc::sourcelist=$apt_dir/etc/sources.list"
              -o "Dir::Etc::sourceparts=-" -o "Dir::State=$apt_dir/state" -o "Dir::State::status=$apt_dir/state/status"
              -o "Dir::Cache=$apt_dir/cache" -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64"
              -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -q)
  say "fetching Debian $DEBIAN_SUITE arm64 package lists"
  apt-get "${opts[@]}" update >/dev/null || die "cannot read the Debian registry ($DEBIAN_MIRROR, $DEBIAN_SUITE arm64)"
  for pkg in "${DEBS[@]}"; do
    (cd "$CACHE/debs" && apt-get "${opts[@]}" download "$pkg" >/dev/null 2>&1) \
      || die "the Debian registry does not serve $pkg:arm64 ($DEBIAN_SUITE); update DEBS in .ci/arm_parity.sh (see: apt-cache policy)"
  done
  for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$CACHE/sysroot"; done
  rm -rf "$apt_dir"
  [ -x "$CACHE/sysroot/usr/bin/python$PY_VERSION" ] || die "no python$PY_VERSION in the unpacked arm64 packages"
}

install_wheels() {
  rm -rf "$CACHE/site"
  local entry site
  for entry in "${WHEEL_SITES[@]}"; do
    read -r site pins <<<"$entry"
    say "PyPI aarch64 wheels -> site/$site: $pins"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-deps --no-compile --only-binary=:all: --target "$CACHE/site/$site" \
        --implementation cp --python-version "$PY_VERSION" --abi "cp${PY_VERSION/./}" \
        --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
        $pins >/dev/null 2>"$CACHE/pip.err" \
      || die "PyPI has no aarch64 CPython $PY_VERSION wheel for $pins (pip: $(grep -m1 ERROR "$CACHE/pip.err" || tail -n1 "$CACHE/pip.err"))"
  done
  rm -f "$CACHE/pip.err"
}

write_env() {
  local sites="" entry site pins
  for entry in "${WHEEL_SITES[@]}"; do
    read -r site pins <<<"$entry"
    sites+="${sites:+, }\"$site\": \"$pins\""
  done
  cat > "$CACHE/env.json" <<EOF
{"stamp": "$STAMP", "qemu": "$QEMU", "qemu_version": "$("$QEMU" --version | head -n1)",
 "python": "$CACHE/sysroot/usr/bin/python$PY_VERSION", "sysroot": "$CACHE/sysroot", "site_dir": "$CACHE/site",
 "debian": "$DEBIAN_SUITE arm64: ${DEBS[*]}", "sites": {$sites}}
EOF
}

ensure_qemu
if [ -f "$CACHE/env.json" ] && grep -q "\"stamp\": \"$STAMP\"" "$CACHE/env.json"; then
  say "reusing $CACHE (pins unchanged)"
else
  t0=$SECONDS
  mkdir -p "$CACHE"
  rm -f "$CACHE/env.json"
  build_sysroot
  install_wheels
  write_env
  say "built $CACHE in $((SECONDS - t0)) s ($(du -sh "$CACHE" | cut -f1))"
fi
[ "$SETUP_ONLY" = 1 ] && exit 0
exec "$PY" -m toolkit.bench.arm --env "$CACHE/env.json" "${MODE_ARGS[@]}"
