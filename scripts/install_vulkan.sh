#!/usr/bin/env bash
# Installs a software Vulkan driver (Mesa's lavapipe >= 25) for LiteRT's GPU accelerator on
# Debian 12 (bookworm). Debian 12's own Mesa 22.3 fails in LiteRT with "No adapters found";
# bookworm-backports carries Mesa 25. Idempotent: does nothing when lavapipe 25+ is installed.
# Needs root and apt; prints how long apt took. Exit 0 also when apt is absent (the GPU tests then
# skip and say why).
set -euo pipefail

lavapipe_version() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true
}

have() {
  local v
  v=$(lavapipe_version)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 25 && dpkg-query -W -f='${Status}' libvulkan1 2>/dev/null | grep -q "ok installed"
}

if have; then
  echo "install_vulkan: mesa-vulkan-drivers $(lavapipe_version) already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_vulkan: no apt-get here; install Mesa >= 25 (lavapipe) and libvulkan1 by hand"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_vulkan: needs root (apt-get install)" >&2
  exit 2
fi
start=$(date +%s)
. /etc/os-release
suite="${VERSION_CODENAME:-bookworm}-backports"
list=/etc/apt/sources.list.d/mobilenetv4-backports.list
if ! grep -rqs "$suite" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian $suite main" > "$list"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t "$suite" mesa-vulkan-drivers libvulkan1 >/dev/null
echo "install_vulkan: mesa-vulkan-drivers $(lavapipe_version) installed in $(( $(date +%s) - start )) s"
