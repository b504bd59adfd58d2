#!/bin/bash
# test_vulkan_ops on the H200 (the new DecodeLayerMatchesSeparateOps runs there).
set -u
D=$PWD/.devcarry/vk
for f in .devcarry/gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json LD_LIBRARY_PATH=$D/lib
timeout 300 $D/test_vulkan_ops 2>&1 | grep -E "DecodeLayer|Failure|Expected|Which|actual|error|PASSED|FAILED|SKIPPED" | head -40 | tee $OUT/t16.txt
