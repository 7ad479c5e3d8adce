#!/usr/bin/env bash
# `make test-arm64`: vaegan's torch-free runtime on an emulated aarch64 Debian (debootstrap +
# qemu-user-static through binfmt_misc), against the artifacts exported on this x86 machine:
#   1. the cross-machine parity check (scripts/arm64/parity.py) at fp32, fp16 and int8;
#   2. the runtime tests that matter most on a device (tests/core, the sampler, the doctor);
#   3. `vaegan serve` answering /v2/health/ready and /v1/sample, and `vaegan doctor` naming ARM's features.
# The Debian root and its venv are built once and cached under $VAEGAN_ARM64_ROOT (default
# ~/.cache/vaegan/arm64-bookworm); the venv is rebuilt when pyproject.toml changes.
# Needs root (debootstrap, chroot, mounts, binfmt); says why in one line and exits 2 where it cannot run.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
FIXTURE=${FIXTURE:-build/fixture-artifacts}
ROOTFS=${VAEGAN_ARM64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/vaegan/arm64-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=${PY:-.venv/bin/python}
t0=$(date +%s)
say() { echo "test-arm64 [$(( $(date +%s) - t0 ))s]: $*"; }
cannot() { echo "test-arm64: cannot run here: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || cannot "needs root (debootstrap, chroot and binfmt_misc); run it as root or in CI"
[ "$(uname -m)" = x86_64 ] || cannot "runs on an x86_64 host (it emulates aarch64); on an ARM board run the runtime tests directly"

# ---- host tools, from Debian's packages
if ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/qemu-aarch64-static ]; then
  say "installing debootstrap and qemu-user-static"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q debootstrap qemu-user-static binfmt-support >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap qemu-user-static binfmt-support >/dev/null; } \
    || cannot "apt-get could not install debootstrap qemu-user-static binfmt-support"
fi

# ---- binfmt_misc: the kernel hands aarch64 binaries to qemu
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || cannot "binfmt_misc cannot be mounted (a container without that privilege)"
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then  # qemu's own aarch64 entry, F: the interpreter is opened now
    echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
      > /proc/sys/fs/binfmt_misc/register 2>/dev/null || cannot "could not register qemu-aarch64 with binfmt_misc"
  fi
fi

# ---- the Debian root (cached)
if [ ! -e "$ROOTFS/.vaegan-root-ready" ]; then
  say "building an arm64 Debian bookworm root in $ROOTFS (once; about 5 minutes)"
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  debootstrap --arch=arm64 --variant=minbase --foreign \
    --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$ROOTFS" "$MIRROR" >/dev/null \
    || cannot "debootstrap could not download Debian's arm64 packages from $MIRROR"
  cp /usr/bin/qemu-aarch64-static "$ROOTFS/usr/bin/"
  chroot "$ROOTFS" /debootstrap/debootstrap --second-stage >/dev/null
  touch "$ROOTFS/.vaegan-root-ready"
fi

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for d in proc dev sys; do
  mountpoint -q "$ROOTFS/$d" || { mount --bind "/$d" "$ROOTFS/$d" && mounted+=("$ROOTFS/$d"); }
done
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true

# ---- this checkout inside it: the package, the torch-free tests, the fixture artifacts
say "copying the checkout and the fixture artifacts in"
rm -rf "$ROOTFS/src/vaegan"
mkdir -p "$ROOTFS/src/vaegan"
tar -C "$REPO" -cf - pyproject.toml README.md vaegan scripts tests/__init__.py tests/conftest.py tests/core tests/runtime \
  "$FIXTURE" | tar -C "$ROOTFS/src/vaegan" -xf -
"$PY" scripts/arm64/parity.py "$FIXTURE" --write "$ROOTFS/src/vaegan/build/parity-x86.npz" --backends ort,openvino >/dev/null

# ---- the runtime's venv (cached by pyproject.toml's hash)
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$ROOTFS/opt/venv/.vaegan-stamp" 2>/dev/null)" != "$stamp" ]; then
  say "installing vaegan's runtime (no torch) with pip in the arm64 root"
  chroot "$ROOTFS" /bin/sh -c "rm -rf /opt/venv && python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --upgrade pip \
    && cd /src/vaegan && /opt/venv/bin/pip install -q '.[serve]' 'pytest>=8.0' 'hypothesis>=6.100' 'httpx>=0.27'" \
    || { echo "test-arm64: pip could not install vaegan's runtime for aarch64" >&2; exit 1; }
  echo "$stamp" > "$ROOTFS/opt/venv/.vaegan-stamp"
  # OpenVINO's aarch64 wheel, where one satisfies vaegan's pin: its runner is compared too
  chroot "$ROOTFS" /opt/venv/bin/pip install -q 'openvino>=2024.2' >/dev/null 2>&1 \
    && say "OpenVINO installed for aarch64" || say "no OpenVINO wheel for aarch64 satisfies openvino>=2024.2: its runner is skipped"
fi
inroot() { chroot "$ROOTFS" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root VAEGAN_FIXTURE=/src/vaegan/$FIXTURE \
  /bin/sh -c "cd /src/vaegan && $*"; }
inroot "python -c 'import platform, sys; import importlib.util as u; assert platform.machine() == \"aarch64\", platform.machine(); sys.exit(\"torch is installed\" if u.find_spec(\"torch\") else 0)'"

# ---- 1. parity with x86
say "parity: the x86 export decoded and encoded on aarch64"
inroot "python scripts/arm64/parity.py $FIXTURE --check build/parity-x86.npz ${ARM64_PERTURB:+--perturb $ARM64_PERTURB}"

# ---- 2. the runtime tests that matter most on a device
say "runtime tests on aarch64"
inroot "python -m pytest -q -p no:cacheprovider ${ARM64_TESTS:-tests/core tests/runtime/test_sampler.py tests/runtime/test_doctor.py tests/runtime/test_bad_files.py}"

# ---- 3. vaegan serve and vaegan doctor on aarch64
say "vaegan serve and vaegan doctor on aarch64"
inroot "python - <<'PY'
import json, subprocess, sys, time, urllib.request
p = subprocess.Popen([sys.executable, '-m', 'vaegan', 'serve', '$FIXTURE', '--port', '18931'], stderr=subprocess.PIPE)
try:
    for _ in range(240):
        try:
            urllib.request.urlopen('http://127.0.0.1:18931/v2/health/ready', timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        sys.exit('vaegan serve did not become ready on aarch64')
    req = urllib.request.Request('http://127.0.0.1:18931/v1/sample', data=json.dumps({'n': 4, 'seed': 0}).encode(),
                                 headers={'Content-Type': 'application/json'})
    r = urllib.request.urlopen(req, timeout=60)
    assert r.status == 200, r.status
    print('serve on aarch64: ready, /v1/sample answered', r.headers.get('Content-Type'))
finally:
    p.terminate()
    p.wait(timeout=30)
PY"
inroot "vaegan doctor $FIXTURE" | tee /tmp/vaegan-arm64-doctor.txt
grep -q "cpu *aarch64" /tmp/vaegan-arm64-doctor.txt || { echo "test-arm64: doctor did not report the ARM CPU" >&2; exit 1; }
if grep -qi "vnni\|avx" /tmp/vaegan-arm64-doctor.txt; then echo "test-arm64: doctor talks about x86 features on ARM" >&2; exit 1; fi
say "passed"
