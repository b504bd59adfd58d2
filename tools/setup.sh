#!/usr/bin/env bash
# Installs what pensieve needs on Debian 12 (only the packages that are missing), then configures
# and builds into build/. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build and test dependencies, all Debian packages (see README "Dependencies" for why each).
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libbenchmark-dev libopenblas-dev
  nlohmann-json3-dev libcpp-httplib-dev libcurl4-openssl-dev libssl-dev libpcre2-dev
  libvulkan-dev mesa-vulkan-drivers glslang-tools
  vulkan-validationlayers  # PENSIEVE_VK_VALIDATION=1 runs the Vulkan tests under the Khronos validation layer
  g++-aarch64-linux-gnu qemu-user-static
  nodejs  # the server's SDK tests (tests/server: @anthropic-ai/sdk, openai from npm); node >= 20 wanted
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# npm comes with NodeSource's nodejs (which conflicts with Debian's npm package); Debian's own
# nodejs needs the npm package besides.
if ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C build
