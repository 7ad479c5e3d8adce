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

# The emulated CPU is an Arm Neoverse N1 (Graviton2's and Ampere Altra's core: NEON dot product, no
# i8mm). qemu-user shows the host's x86 /proc/cpuinfo and /sys, and ONNX Runtime's cpuinfo library
# crashes on the host's /sys topology (SIGSEGV, measured) and prints warnings on its cpuinfo, so the
# root gets a /proc/cpuinfo and a /sys/devices/system/cpu that describe the emulated CPU instead.
QEMU_CPU=neoverse-n1
CPU_DIR="$ROOTFS/.vaegan-cpu"
NCPU=$(nproc)
rm -rf "$CPU_DIR" && mkdir -p "$CPU_DIR/sys/devices/system/cpu"
for f in possible present online; do echo "0-$((NCPU - 1))" > "$CPU_DIR/sys/devices/system/cpu/$f"; done
: > "$CPU_DIR/cpuinfo"
for ((c = 0; c < NCPU; c++)); do
  mkdir -p "$CPU_DIR/sys/devices/system/cpu/cpu$c/topology"
  echo 0 > "$CPU_DIR/sys/devices/system/cpu/cpu$c/topology/physical_package_id"
  echo "$c" > "$CPU_DIR/sys/devices/system/cpu/cpu$c/topology/core_id"
  printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$c" >> "$CPU_DIR/cpuinfo"
done
mounted=()
cleanup() { for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
bind() { [ -e "$2" ] || mkdir -p "$2"; mount --bind "$1" "$2" && mounted+=("$2"); }
bind /proc "$ROOTFS/proc"
bind /dev "$ROOTFS/dev"
bind "$CPU_DIR/sys" "$ROOTFS/sys"
bind "$CPU_DIR/cpuinfo" "$ROOTFS/proc/cpuinfo"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
# the root trusts what this host trusts (a company's or a sandbox's TLS proxy CA), and uses its proxy
HOST_CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$HOST_CA" ] && cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/vaegan-host-ca.crt"
ROOT_ENV=(QEMU_CPU=$QEMU_CPU PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
if [ -f "$ROOTFS/etc/ssl/certs/vaegan-host-ca.crt" ]; then
  ROOT_ENV+=(PIP_CERT=/etc/ssl/certs/vaegan-host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/vaegan-host-ca.crt
             REQUESTS_CA_BUNDLE=/etc/ssl/certs/vaegan-host-ca.crt)
fi
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!v:-}" ] && ROOT_ENV+=("$v=${!v}")
done
inroot() { chroot "$ROOTFS" /usr/bin/env -i "${ROOT_ENV[@]}" VAEGAN_FIXTURE="/src/vaegan/$FIXTURE" \
  /bin/sh -c "cd /src/vaegan && $*"; }

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
  inroot "rm -rf /opt/venv && python3 -m venv /opt/venv && pip install -q --upgrade pip \
    && pip install -q '.[serve]' 'pytest>=8.0' 'hypothesis>=6.100' 'httpx>=0.27'" \
    || { echo "test-arm64: pip could not install vaegan's runtime for aarch64" >&2; exit 1; }
  echo "$stamp" > "$ROOTFS/opt/venv/.vaegan-stamp"
  # OpenVINO's aarch64 wheel, where one satisfies vaegan's pin and runs here: its runner is compared too
  if inroot "pip install -q 'openvino>=2024.2'" >/dev/null 2>&1; then
    # measured: openvino 2026.4's CPU plugin dies with SIGSEGV under qemu-user (hwloc finds no CPU
    # topology); then it is removed, so the device tests skip it instead of crashing
    if inroot "python -c 'import openvino as ov; ov.Core().compile_model(\"$FIXTURE/openvino/decoder.fp32.xml\", \"CPU\")'" >/dev/null 2>&1; then
      say "OpenVINO installed for aarch64 and compiles the fixture"
    else
      inroot "pip uninstall -q -y openvino" >/dev/null 2>&1
      say "OpenVINO's aarch64 wheel installs but crashes under emulation (qemu-user, no CPU topology): its runner is not compared"
    fi
  else
    say "no OpenVINO wheel for aarch64 satisfies openvino>=2024.2: its runner is not compared"
  fi
fi
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
grep -q "cpu *aarch64: asimddp" /tmp/vaegan-arm64-doctor.txt || { echo "test-arm64: doctor did not name the ARM CPU's NEON dot product" >&2; exit 1; }
if grep -qi "vnni\|avx" /tmp/vaegan-arm64-doctor.txt; then echo "test-arm64: doctor talks about x86 features on ARM" >&2; exit 1; fi
say "passed"
