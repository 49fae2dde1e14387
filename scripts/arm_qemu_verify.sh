#!/usr/bin/env bash
# ARM proof: run tfface's lite runtime on linux/aarch64 under qemu-user and verify two photos
# with the shipped default model (dlib_resnet_int8.tflite + the TFLite MTCNN). Not run in CI.
#
# Needs root on a Debian/Ubuntu x86_64 host with apt, a Debian mirror and PyPI reachable.
# Everything is written under $WORK (default /tmp/tfface-arm); the repository is only read.
# Idempotent: each step is skipped when its result is already there (delete $WORK to redo).
#
# Steps
#   1. apt-get install qemu-user-static binfmt-support debootstrap; mount binfmt_misc if it
#      is not mounted and enable the qemu-aarch64 handler (flag F: the interpreter is loaded by
#      the kernel, so aarch64 binaries run inside a chroot without copying qemu in).
#   2. debootstrap --arch=arm64 --foreign bookworm $WORK/rootfs <mirror apt uses>, then
#      chroot $WORK/rootfs /debootstrap/debootstrap --second-stage (emulated), with python3 and
#      python3-venv (Python 3.11) included.
#   3. On the HOST: pip download --only-binary=:all: of aarch64 / cp311 wheels for numpy,
#      opencv-python-headless, ai-edge-litert, pillow, tqdm and their dependencies into
#      $WORK/wheels (no network is needed inside the arm64 root).
#   4. Inside the root (emulated): python3 -m venv /opt/venv; pip install --no-index from the
#      wheels copied in.
#   5. Copy in only tfface/, tflite/, saved_models/mtcnn, the default int8 model + its JSON
#      card, and samples/ to /opt/tfface.
#   6. Inside the root: print uname -m and the Python platform, then time
#      python -m tfface.cli.verify samples/person_a_1.jpg samples/person_a_2.jpg --json
#      (same person) and person_a_1 vs person_b_1 (different person), with PYTHONPATH=/opt/tfface.
#
# Usage: sudo scripts/arm_qemu_verify.sh        (WORK=/some/dir to change the working dir)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-/tmp/tfface-arm}"
ROOT="$WORK/rootfs"
WHEELS="$WORK/wheels"
SUITE=bookworm
PY_PACKAGES=(numpy opencv-python-headless ai-edge-litert pillow tqdm)

log() { printf '\n== %s\n' "$*" >&2; }

if [[ $EUID -ne 0 ]]; then
    echo "run as root (debootstrap and chroot need it)" >&2
    exit 2
fi
mkdir -p "$WORK"

# --- 1. host tools and binfmt_misc -----------------------------------------------------------
log "1. qemu-user-static, binfmt-support, debootstrap"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v update-binfmts >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        qemu-user-static binfmt-support debootstrap >/dev/null
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    update-binfmts --enable qemu-aarch64
fi
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64
qemu-aarch64-static --version | sed -n 1p

# The mirror apt on this host uses (deb822 "URIs:" or one-line "deb URL suite ...").
MIRROR="${MIRROR:-}"
if [[ -z "$MIRROR" ]]; then
    MIRROR="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                  /etc/apt/sources.list.d/*.sources 2>/dev/null \
              | awk '/^URIs:/ {print $2} /^deb / {for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; break}}' \
              | grep -v -- '-security' | grep '/debian/*$' | head -1 || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
echo "mirror: $MIRROR"

# --- 2. arm64 Debian root ----------------------------------------------------------------------
log "2. debootstrap arm64 $SUITE in $ROOT"
if [[ ! -x "$ROOT/usr/bin/python3" || ! -e "$ROOT/.second-stage-done" ]]; then
    if [[ ! -e "$ROOT/debootstrap/debootstrap" ]]; then
        rm -rf "$ROOT"
        debootstrap --arch=arm64 --foreign --variant=minbase \
            --include=python3,python3-venv,ca-certificates "$SUITE" "$ROOT" "$MIRROR"
    fi
    chroot "$ROOT" /debootstrap/debootstrap --second-stage
    touch "$ROOT/.second-stage-done"
fi

# --- 3. aarch64 wheels, downloaded on the host -------------------------------------------------
log "3. pip download aarch64 cp311 wheels to $WHEELS"
if [[ ! -e "$WHEELS/.done" ]]; then
    mkdir -p "$WHEELS"
    python3 -m pip download --quiet --only-binary=:all: \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp \
        -d "$WHEELS" "${PY_PACKAGES[@]}"
    touch "$WHEELS/.done"
fi
ls -1 "$WHEELS" | grep -v '^\.' | sed 's/^/  /'

# --- 4. venv with the wheels inside the root (emulated, offline) -----------------------------
log "4. venv /opt/venv inside the root"
if [[ ! -e "$ROOT/opt/venv/.done" ]]; then
    rm -rf "$ROOT/opt/wheels"
    mkdir -p "$ROOT/opt/wheels"
    cp "$WHEELS"/*.whl "$ROOT/opt/wheels/"
    chroot "$ROOT" /usr/bin/python3 -m venv /opt/venv
    chroot "$ROOT" /usr/bin/env PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install \
        --quiet --no-index --find-links /opt/wheels "${PY_PACKAGES[@]}"
    touch "$ROOT/opt/venv/.done"
fi

# --- 5. tfface source and the shipped model ----------------------------------------------------
log "5. copy tfface/, tflite/, models, samples to /opt/tfface"
DEST="$ROOT/opt/tfface"
rm -rf "$DEST"
mkdir -p "$DEST/saved_models/dlib_resnet"
cp -a "$REPO/tfface" "$REPO/tflite" "$REPO/samples" "$DEST/"
cp -a "$REPO/saved_models/mtcnn" "$DEST/saved_models/"
cp -a "$REPO/saved_models/dlib_resnet/dlib_resnet_int8.tflite" \
      "$REPO/saved_models/dlib_resnet/dlib_resnet_int8.json" "$DEST/saved_models/dlib_resnet/"
find "$DEST" -name __pycache__ -type d -prune -exec rm -rf {} +

# --- 6. verify under emulation -----------------------------------------------------------------
log "6. verify under qemu-aarch64"
# /proc and /sys inside the root (XNNPACK's cpuinfo reads /sys/devices/system/cpu); fresh proc
# and sysfs mounts, never bind mounts of the host's, and unmounted again on exit.
MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount "${MOUNTED[i]}" || true; done
}
trap cleanup EXIT
for fs in proc sys; do
    if ! mountpoint -q "$ROOT/$fs"; then
        if mount -t "${fs/sys/sysfs}" "$fs" "$ROOT/$fs"; then
            MOUNTED+=("$ROOT/$fs")
        else
            echo "warning: could not mount $fs in the root (cpuinfo may complain)" >&2
        fi
    fi
done
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root \
        PYTHONPATH=/opt/tfface PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2 \
        /bin/bash -c "cd /opt/tfface && $1"
}
in_root 'echo "uname -m: $(uname -m)"; python -c "import platform, sys; print(\"python:\", sys.version.split()[0], platform.machine())"'
in_root 'python -c "import numpy, cv2, ai_edge_litert; print(\"numpy\", numpy.__version__, \"| cv2\", cv2.__version__, \"| ai_edge_litert ok\")"'

status=0
for pair in "person_a_1.jpg person_a_2.jpg" "person_a_1.jpg person_b_1.jpg"; do
    set -- $pair
    echo "--- verify $1 $2"
    t0=$(date +%s.%N)
    rc=0
    in_root "python -m tfface.cli.verify samples/$1 samples/$2 --json" || rc=$?
    t1=$(date +%s.%N)
    printf 'exit status %d, wall time %.1f s (emulated, including Python start-up and imports)\n' \
        "$rc" "$(python3 -c "print($t1 - $t0)")"
    # 0 same person, 1 different: anything else is a failure.
    if [[ $rc -gt 1 ]]; then status=$rc; fi
done
in_root 'python -c "import sys, tfface.verifier, tflite.interpreter as ti; print(\"tensorflow imported:\", \"tensorflow\" in sys.modules, \"| interpreter:\", ti.interpreter_class()[1] if hasattr(ti, \"interpreter_class\") else \"?\")"' || true
exit $status
