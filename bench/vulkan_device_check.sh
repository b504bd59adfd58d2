#!/bin/bash
# Vulkan check on the lent GPU (device tool): unpack the loader, find the NVIDIA ICD, run the op
# tests and the op benchmark; logs land in $OUT. Its folder must hold test_vulkan_ops,
# pensieve-vulkan-bench (built here: Debian 12 binaries run on the device image) and gl/*.deb:
#   apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2
# (amd64; see the device README's headless-rendering recipe: NVIDIA's ICD needs libglvnd).
# Usage there: bash <folder>/vulkan_device_check.sh [bench args, e.g. --sweep --check]
set -u
cd "$(dirname "$0")"
for f in gl/*.deb; do dpkg -x "$f" /; done
ldconfig
# Pick the first ICD manifest with which a Vulkan instance lists a device (the one under
# /usr/local/nvidia first: the README's recipe; /usr/share's failed with INCOMPATIBLE_DRIVER here).
CANDS="/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json $(find /usr /etc /opt -name 'nvidia_icd*.json' 2>/dev/null | tr '\n' ' ')"
for j in $CANDS; do
  [ -f "$j" ] || continue
  echo "trying ICD $j: $(grep -o '"library_path"[^,]*' "$j")"
  if VK_DRIVER_FILES="$j" VK_LOADER_DEBUG=error ./test_vulkan_ops --gtest_filter='*DeviceSelection*' 2>&1 | tee -a "$OUT/icd.log" | grep -q "vulkan:0 "; then
    export VK_DRIVER_FILES="$j"; echo "using $j"; break
  fi
done
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  echo "no ICD worked; loader debug for each:"
  for j in $CANDS; do [ -f "$j" ] && { echo "== $j"; cat "$j"; VK_DRIVER_FILES="$j" VK_LOADER_DEBUG=all ./test_vulkan_ops --gtest_filter='*DeviceSelection*' 2>&1 | grep -iE "error|fail|driver|icd|lib" | tail -15; }; done
  ls -la /usr/local/nvidia/lib64 2>/dev/null | grep -iE "glx|vulkan|egl" | head; ldconfig -p | grep -iE "nvidia|vulkan" | head -20
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv
( set -o pipefail; timeout 240 ./test_vulkan_ops --gtest_brief=1 2>&1 | tee "$OUT/test.log" | tail -40 ); echo "test rc=$?"
( set -o pipefail; timeout 240 ./pensieve-vulkan-bench "$@" 2>&1 | tee "$OUT/bench.log" ); echo "bench rc=$?"
